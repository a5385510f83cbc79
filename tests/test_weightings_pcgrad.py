"""PCGrad: projections against a float64 NumPy loop, the order property, seeded randomness."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import weightings
from came_grad_jax.weightings._pcgrad import project_conflicting, random_orders
from tests import mtl_checks
from tests.tiers import grid

PROJECT = jax.jit(project_conflicting)


def pcgrad_reference(h: np.ndarray, orders: np.ndarray) -> np.ndarray:
  """Rows: each ``h_i`` after projecting out its conflicts with ``h_j``, j in ``orders[i]`` (Yu et al. 2020)."""
  projected = h.copy()
  for i, order in enumerate(orders):
    for j in order:
      inner = projected[i] @ h[j]
      if j != i and inner < 0:
        projected[i] -= inner / (h[j] @ h[j]) * h[j]
  return projected


def projected_rows(h: np.ndarray, orders: np.ndarray, project=PROJECT) -> np.ndarray:
  with jax.enable_x64(True):
    return np.asarray(project(jnp.asarray(h @ h.T), jnp.asarray(orders))) @ h


def test_matches_float64_reference(x64):
  errors = {}
  for k, case in itertools.product((2, 4), mtl_checks.CASES):
    h = mtl_checks.gradients(case, k)
    orders = np.asarray(random_orders(jax.random.key(k), k))
    want = pcgrad_reference(h, orders)
    scale = max(np.linalg.norm(h, axis=1).sum(), 1e-300)
    errors[k, case] = np.linalg.norm(projected_rows(h, orders) - want) / scale
  mtl_checks.assert_all_below(errors, 1e-13)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  h = mtl_checks.gradients("random", 4)
  orders = np.asarray(random_orders(jax.random.key(0), 4))
  got = projected_rows(h, orders, PROJECT if jit else project_conflicting)
  np.testing.assert_allclose(got, pcgrad_reference(h, orders), atol=1e-12)


def test_no_conflict_with_the_task_just_visited(x64):
  """After visiting j, ``<g_i, h_j> >= 0``: checked after every prefix of the orders.

  A prefix of length t is the order with its later entries replaced by i itself
  (a task skips itself), so that every prefix has the same shape.
  """
  for seed in range(6):
    h = mtl_checks.random_gradients(seed, num_tasks=5)
    orders = np.asarray(random_orders(jax.random.key(seed), 5))
    for t in range(1, 6):
      prefix = np.where(np.arange(5) < t, orders, np.arange(5)[:, None])
      rows = projected_rows(h, prefix)
      for i in range(5):
        j = orders[i, t - 1]
        if j != i:
          assert rows[i] @ h[j] >= -1e-12 * np.linalg.norm(rows[i]) * np.linalg.norm(h[j])


def test_coefficients_come_from_some_order_and_are_seeded(x64):
  h = mtl_checks.gradients("random", 3)
  h[2] = -h[0] + 0.3 * h[1]  # conflicts, so the order matters
  candidates = [pcgrad_reference(h, np.array(orders)).sum(0)
                for orders in itertools.product(itertools.permutations(range(3)), repeat=3)]
  apply = jax.jit(weightings.pcgrad().apply)  # the same for every seed
  runs = {}
  for seed in (0, 0, 1, 2, 3):
    state = weightings.pcgrad(seed).init(3)
    updates = []
    for _ in range(3):
      c, state = apply(jnp.asarray(h @ h.T), state)
      d = np.asarray(c) @ h
      assert min(np.linalg.norm(d - cand) for cand in candidates) <= 1e-12 * np.abs(h).sum()
      updates.append(d)
    if seed in runs:
      np.testing.assert_array_equal(np.stack(updates), runs[seed])  # reproducible
    runs[seed] = np.stack(updates)
  assert len({r.round(8).tobytes() for r in runs.values()}) > 1  # seeds differ


def test_no_conflicts_is_linear_scalarization(x64):
  h = np.abs(mtl_checks.gradients("random", 4))
  c = mtl_checks.coefficients(mtl_checks.jitted(weightings.pcgrad()), h)
  np.testing.assert_array_equal(c, np.ones(4))


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(mtl_checks.jitted(weightings.pcgrad()))
