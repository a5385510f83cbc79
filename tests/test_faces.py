"""The closed-form face minimisers behind S1 and MGDA: batched SPD solves, candidates, selection."""

import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import _faces as faces
from tests.tiers import grid


def random_gram(k, seed, dim=12):
  h = np.random.default_rng(seed).normal(size=(k, dim))
  h += np.random.default_rng(seed + 1).normal() * h[0]
  return h @ h.T


@pytest.mark.parametrize("k", grid([3, 8, 12], fast=[3, 12]))  # 12: the Gauss-Jordan branch above SMALL_K
def test_batched_spd_solve_matches_numpy(x64, k):
  rng = np.random.default_rng(k)
  num = 5
  mats = np.stack([random_gram(k, s, dim=k + 3) + 1e-3 * np.eye(k) for s in range(num)], -1)
  rhs = rng.normal(size=(k, 2, num))
  got = np.asarray(faces._spd_solve(jnp.asarray(np.concatenate([mats, rhs], 1)), k))
  want = np.stack([np.linalg.solve(mats[..., f], rhs[..., f]) for f in range(num)], -1)
  np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8 * np.abs(want).max())


@pytest.mark.slow
def test_face_candidates_batch_equals_one_face_at_a_time(x64):
  k = 5
  m = jnp.asarray(random_gram(k, 3))
  b = m.sum(1) / k
  supports = faces.all_supports(k)[:, 1:]  # drop the empty face
  smooth, kink = faces.face_candidates(m, b, 0.3, supports)
  for f in range(supports.shape[1]):
    one_smooth, one_kink = faces.face_candidates(m, b, 0.3, supports[:, f:f + 1])
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
  np.testing.assert_array_equal(faces.select_best(value_and_grad, alpha, (cands,), 0.0),
                                alpha)
  better = lambda a: (jnp.sum(jnp.abs(a - jnp.array([[1.0], [0.0]])), 0), jnp.zeros_like(a))
  np.testing.assert_array_equal(faces.select_best(better, alpha, (cands,), 0.0), [1.0, 0.0])
