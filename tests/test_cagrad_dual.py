"""CAGrad's dual (S1's solver): optimality certificates, K = 2 exactness, no host callbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax.weightings import _cagrad as cagrad_module
from tests import reference
from tests.tiers import grid


def random_gram(k, seed, dim=12):
  h = np.random.default_rng(seed).normal(size=(k, dim))
  h += np.random.default_rng(seed + 1).normal() * h[0]
  return h @ h.T


@pytest.mark.parametrize("k", grid([2, 3, 5, 8, 16], fast=[2]))
@pytest.mark.parametrize("seed", range(3))
def test_dual_gap_and_reference_objective(x64, k, seed):
  m = random_gram(k, seed)
  alpha = np.asarray(jax.jit(cagrad_module.conflict_averse_dual)(jnp.asarray(m), 0.5))
  assert np.all(alpha >= 0) and abs(alpha.sum() - 1) < 1e-12
  r = 0.5 * np.sqrt(m.sum()) / k
  h_alpha_norm = np.sqrt(alpha @ m @ alpha)
  # Weak duality certificate: u = mu + r h_alpha/||h_alpha|| is primal feasible.
  primal = np.min(m.sum(1) / k + r * (m @ alpha) / h_alpha_norm)
  dual = reference.dual_objective(alpha, m, r)
  scale = np.abs(m.sum(1) / k).max() + r * np.sqrt(np.diag(m).max())
  assert dual - primal <= 1e-6 * scale
  best = reference.dual_objective(reference.solve_dual(m, 0.5), m, r)
  assert dual <= best + 1e-12 * scale


def test_two_tasks_exact_against_dense_search(x64):
  m = random_gram(2, 7)
  r = 0.8 * np.sqrt(m.sum()) / 2
  a = np.asarray(cagrad_module.conflict_averse_dual(jnp.asarray(m), 0.8))
  grid = np.linspace(0, 1, 200001)
  vals = [reference.dual_objective(np.array([t, 1 - t]), m, r) for t in grid]
  assert reference.dual_objective(a, m, r) <= min(vals) + 1e-14
  assert abs(a[0] - grid[int(np.argmin(vals))]) <= 1e-5


@pytest.mark.parametrize("k", [2, 5])
def test_no_host_callbacks_in_the_compiled_solver(k):
  jaxpr = jax.make_jaxpr(cagrad_module.conflict_averse_dual)(jnp.eye(k), 0.5)
  text = str(jaxpr)
  assert "callback" not in text and "pure_callback" not in text


@pytest.mark.parametrize("k", grid([4, 6, 7], fast=[7]))
def test_dual_objective_is_optimal_on_every_case(x64, case, k):
  """As good as the exhaustive float64 reference, including K outside {2, 3, 5, 8}."""
  h = reference.task_gradients(case, k)
  m = h @ h.T
  r = 0.5 * np.sqrt(max(m.sum(), 0.0)) / k
  alpha = np.asarray(cagrad_module.conflict_averse_dual(jnp.asarray(m), 0.5))
  best = reference.dual_objective(reference.solve_dual(m, 0.5), m, r)
  assert reference.dual_objective(alpha, m, r) <= best + 1e-12 * max(abs(best), 1e-300)
