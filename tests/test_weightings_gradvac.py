"""GradVac: adjustments and EMA targets against a float64 NumPy loop; PCGrad at zero targets."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import weightings
from came_grad_jax.weightings._gradvac import vaccinate
from came_grad_jax.weightings._pcgrad import random_orders
from tests import mtl_checks
from tests.test_weightings_pcgrad import pcgrad_reference
from tests.tiers import grid

VACCINATE = jax.jit(vaccinate)


def gradvac_reference(h, targets, orders, beta):
  """Wang et al. 2021, Alg. 1 (float64): rows ``g_i`` and the updated targets."""
  g, targets = h.copy(), targets.copy()
  norms = np.linalg.norm(h, axis=1)
  for i, order in enumerate(orders):
    for j in order:
      g_norm = np.linalg.norm(g[i])
      if j == i or g_norm == 0 or norms[j] == 0:
        continue
      phi, target = np.clip(g[i] @ h[j] / (g_norm * norms[j]), -1, 1), targets[i, j]
      if phi < target:
        g[i] += (g_norm * (target * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - target**2))
                 / (norms[j] * np.sqrt(1 - target**2)) * h[j])
      targets[i, j] = (1 - beta) * target + beta * phi
  return g, targets


def vaccinated(h, targets, orders, beta, fn=VACCINATE):
  with jax.enable_x64(True):
    a, new = fn(jnp.asarray(h @ h.T), jnp.asarray(targets), jnp.asarray(orders), beta)
    return np.asarray(a) @ h, np.asarray(new)


def test_matches_float64_reference(x64):
  errors = {}
  for k, case in itertools.product((2, 4), mtl_checks.CASES):
    h = mtl_checks.gradients(case, k)
    rng = np.random.default_rng(k)
    targets = rng.uniform(-0.5, 0.5, size=(k, k))
    orders = np.asarray(random_orders(jax.random.key(k), k))
    rows, new = vaccinated(h, targets, orders, 0.3)
    want_rows, want_targets = gradvac_reference(h, targets, orders, 0.3)
    scale = max(np.linalg.norm(h, axis=1).sum(), 1e-300)
    errors[k, case] = max(np.linalg.norm(rows - want_rows) / scale,
                          np.abs(new - want_targets).max())
  mtl_checks.assert_all_below(errors, 1e-11)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  h = mtl_checks.gradients("random", 4)
  targets = np.full((4, 4), 0.2)
  orders = np.asarray(random_orders(jax.random.key(0), 4))
  rows, new = vaccinated(h, targets, orders, 0.5, VACCINATE if jit else vaccinate)
  want_rows, want_targets = gradvac_reference(h, targets, orders, 0.5)
  np.testing.assert_allclose(rows, want_rows, atol=1e-12)
  np.testing.assert_allclose(new, want_targets, atol=1e-14)


def test_zero_targets_are_pcgrad(x64):
  for seed in range(4):
    h = mtl_checks.random_gradients(seed, num_tasks=4)
    orders = np.asarray(random_orders(jax.random.key(seed), 4))
    rows, _ = vaccinated(h, np.zeros((4, 4)), orders, 0.01)
    np.testing.assert_allclose(rows, pcgrad_reference(h, orders), atol=1e-12 * np.abs(h).sum())


def test_targets_are_ema_of_cosines_in_state(x64):
  h = mtl_checks.gradients("random", 2)
  cos = h[0] @ h[1] / np.prod(np.linalg.norm(h, axis=1))
  weighting = mtl_checks.jitted(weightings.gradvac(beta=0.25, key=1))
  state = weighting.init(2)
  for step in range(1, 4):
    _, state = weighting.apply(jnp.asarray(h @ h.T), state)
    # K = 2: each task visits the other first, so phi is the raw cosine every step.
    np.testing.assert_allclose(state.targets[0, 1], (1 - 0.75**step) * cos, rtol=1e-12)


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(mtl_checks.jitted(weightings.gradvac()))
