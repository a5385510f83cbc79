"""The on-device S1 solver: optimality certificates, K = 2 exactness, no host callbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import solvers
from tests import reference


def random_gram(k, seed, dim=12):
  h = np.random.default_rng(seed).normal(size=(k, dim))
  h += np.random.default_rng(seed + 1).normal() * h[0]
  return h @ h.T


@pytest.mark.parametrize("k", [2, 3, 5, 8, 16])
@pytest.mark.parametrize("seed", range(3))
def test_dual_gap_and_reference_objective(x64, k, seed):
  m = random_gram(k, seed)
  alpha = np.asarray(jax.jit(solvers.conflict_averse_dual)(jnp.asarray(m), 0.5))
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
  a = np.asarray(solvers.conflict_averse_dual(jnp.asarray(m), 0.8))
  grid = np.linspace(0, 1, 200001)
  vals = [reference.dual_objective(np.array([t, 1 - t]), m, r) for t in grid]
  assert reference.dual_objective(a, m, r) <= min(vals) + 1e-14
  assert abs(a[0] - grid[int(np.argmin(vals))]) <= 1e-5


@pytest.mark.parametrize("k", [2, 5])
def test_no_host_callbacks_in_the_compiled_solver(k):
  jaxpr = jax.make_jaxpr(solvers.conflict_averse_dual)(jnp.eye(k), 0.5)
  text = str(jaxpr)
  assert "callback" not in text and "pure_callback" not in text


@pytest.mark.parametrize("k", [4, 6, 7])
def test_dual_objective_is_optimal_on_every_case(x64, case, k):
  """As good as the exhaustive float64 reference, including K outside {2, 3, 5, 8}."""
  h = reference.task_gradients(case, k)
  m = h @ h.T
  r = 0.5 * np.sqrt(max(m.sum(), 0.0)) / k
  alpha = np.asarray(solvers.conflict_averse_dual(jnp.asarray(m), 0.5))
  best = reference.dual_objective(reference.solve_dual(m, 0.5), m, r)
  assert reference.dual_objective(alpha, m, r) <= best + 1e-12 * max(abs(best), 1e-300)


@pytest.mark.parametrize("k", [3, 8, 12])  # 12: the Gauss-Jordan branch above UNROLL_TASKS
def test_batched_spd_solve_matches_numpy(x64, k):
  rng = np.random.default_rng(k)
  num = 5
  mats = np.stack([random_gram(k, s, dim=k + 3) + 1e-3 * np.eye(k) for s in range(num)], -1)
  rhs = rng.normal(size=(k, 2, num))
  got = np.asarray(solvers._spd_solve(jnp.asarray(np.concatenate([mats, rhs], 1)), k))
  want = np.stack([np.linalg.solve(mats[..., f], rhs[..., f]) for f in range(num)], -1)
  np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8 * np.abs(want).max())


def test_face_candidates_batch_equals_one_face_at_a_time(x64):
  k = 5
  m = jnp.asarray(random_gram(k, 3))
  b = m.sum(1) / k
  supports = solvers._all_supports(k)[:, 1:]  # drop the empty face
  smooth, kink = solvers.face_candidates(m, b, 0.3, supports)
  for f in range(supports.shape[1]):
    one_smooth, one_kink = solvers.face_candidates(m, b, 0.3, supports[:, f:f + 1])
    np.testing.assert_allclose(smooth[:, f], one_smooth[:, 0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kink[:, f], one_kink[:, 0], rtol=1e-12, atol=1e-14)
    off = ~np.asarray(supports[:, f])
    assert np.all(np.asarray(kink[off, f]) == 0)  # candidates stay on their face


def test_select_best_takes_the_first_of_equal_points(x64):
  # Equal objective and gap everywhere: the iterate (column 0) must win, then
  # the first candidate; infeasible columns are replaced by the iterate.
  value_and_grad = lambda a: (jnp.zeros(a.shape[1:]), jnp.zeros_like(a))
  alpha = jnp.array([0.5, 0.5])
  cands = jnp.array([[1.0, jnp.nan, 2.0], [0.0, 0.5, -1.0]])
  np.testing.assert_array_equal(solvers.select_best(value_and_grad, alpha, (cands,), 0.0),
                                alpha)
  better = lambda a: (jnp.sum(jnp.abs(a - jnp.array([[1.0], [0.0]])), 0), jnp.zeros_like(a))
  np.testing.assert_array_equal(solvers.select_best(better, alpha, (cands,), 0.0), [1.0, 0.0])
