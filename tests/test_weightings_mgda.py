"""MGDA: the min-norm point of the hull, against an exact float64 active-set reference."""

import itertools

import numpy as np
import pytest

from came_grad_jax import weightings
from tests import mtl_checks
from tests.tiers import grid

MGDA = mtl_checks.jitted(weightings.mgda())


def min_norm_reference(h: np.ndarray) -> np.ndarray:
  """``argmin_{alpha in simplex} ||alpha^T h||``: the KKT point over every support, float64.

  On a support S, in the variables ``beta = ||h_k|| alpha_k`` (well scaled for
  badly scaled tasks) the bordered system ``[[C, d], [d^T, 0]] [beta; t] = [0; 1]``
  (``C`` the cosine matrix, ``d_k = 1 / ||h_k||``) gives the min-norm point of
  the affine hull of ``h_S``; the answer is the one that is feasible and
  satisfies ``<h_k, x> >= ||x||^2`` for every k.
  """
  k = h.shape[0]
  norms = np.linalg.norm(h, axis=1)
  if np.any(norms == 0):  # 0 is in the hull
    return np.eye(k)[np.argmin(norms)]
  best, best_value = np.full(k, 1.0 / k), np.inf
  for size in range(1, k + 1):
    for support in itertools.combinations(range(k), size):
      s = list(support)
      u = h[s] / norms[s, None]
      d = 1.0 / norms[s]
      bordered = np.block([[u @ u.T, d[:, None]], [d[None, :], np.zeros((1, 1))]])
      rhs = np.zeros(size + 1)
      rhs[-1] = 1.0
      beta = np.linalg.lstsq(bordered, rhs, rcond=None)[0][:size]
      if np.any(beta < -1e-12 * np.abs(beta).sum()):  # alpha_k ||h_k|| < 0: infeasible
        continue
      alpha = np.zeros(k)
      alpha[s] = np.maximum(beta, 0.0) / norms[s]
      if abs(alpha.sum() - 1) > 1e-9:
        continue
      x = alpha @ h
      optimal = np.all(h @ x >= x @ x - 1e-9 * (np.abs(alpha) @ norms) * norms)
      if optimal and x @ x < best_value:
        best, best_value = alpha, x @ x
  return best


def test_matches_float64_reference(x64):
  mtl_checks.assert_all_below(mtl_checks.reference_errors(MGDA, min_norm_reference), 1e-9)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  mtl_checks.assert_matches_reference(MGDA if jit else weightings.mgda(), min_norm_reference, 1e-9)


def test_min_norm_and_non_conflicting_on_random_grams(x64):
  for seed in range(12):
    h = mtl_checks.random_gradients(seed)
    c = mtl_checks.coefficients(MGDA, h)
    np.testing.assert_allclose(c.sum(), 1.0, rtol=1e-12)
    assert np.all(c >= 0)
    x = c @ h
    # The min-norm point: <h_k, x> >= ||x||^2 for every k (KKT), so no task conflicts.
    assert np.all(h @ x >= x @ x - 1e-9 * np.abs(h).sum() ** 2)
    assert mtl_checks.worst_conflict(h, c) <= 1e-12


def test_known_two_task_solution():
  c = weightings.mgda()(np.array([[1.0, 0.0], [0.0, 4.0]], np.float32))
  np.testing.assert_allclose(c, [0.8, 0.2], rtol=1e-6)


@pytest.mark.slow
def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(MGDA)
