"""SDMGrad (deterministic): the regularised min-norm problem against face enumeration (float64)."""

import itertools

import numpy as np
import pytest

from came_grad_jax import weightings
from tests import mtl_checks
from tests.tiers import grid

SDMGRAD = mtl_checks.jitted(weightings.sdmgrad(0.3))


def simplex_qp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """argmin over the simplex of 1/2 w^T A w + b^T w: the best feasible face minimiser."""
  k = len(b)
  best, best_value = None, np.inf
  for size in range(1, k + 1):
    for support in itertools.combinations(range(k), size):
      s = list(support)
      system = np.block([[a[np.ix_(s, s)], np.ones((size, 1))], [np.ones((1, size)), 0.0]])
      sol = np.linalg.lstsq(system, np.concatenate([-b[s], [1.0]]), rcond=None)[0][:size]
      if np.any(sol < -1e-12) or abs(sol.sum() - 1) > 1e-9:
        continue
      w = np.zeros(k)
      w[s] = np.maximum(sol, 0) / np.maximum(sol, 0).sum()
      value = 0.5 * w @ a @ w + b @ w
      if best is None or value < best_value - 1e-15 * abs(best_value):
        best, best_value = w, value
  return best


def sdmgrad_reference(h: np.ndarray, lam: float = 0.3) -> np.ndarray:
  """Xiao et al. 2023, Eq. (5) with one batch: ``min_w 1/2 ||H^T w + lam mu||^2``, then
  ``d = (H^T w + lam mu) / (1 + lam)``, as coefficients of h."""
  k = len(h)
  mu = h.mean(0)
  w = simplex_qp(h @ h.T, lam * h @ mu)
  return (w + lam / k) / (1 + lam)


def test_matches_float64_reference(x64):
  mtl_checks.assert_all_below(mtl_checks.reference_errors(SDMGRAD, sdmgrad_reference), 1e-9)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  mtl_checks.assert_matches_reference(SDMGRAD if jit else weightings.sdmgrad(0.3),
                                      sdmgrad_reference, 1e-9)


@pytest.mark.slow
def test_lambda_zero_is_mgda_and_large_lambda_the_mean(x64):
  h = mtl_checks.gradients("random", 4)
  mgda = mtl_checks.coefficients(weightings.mgda(), h)
  assert mtl_checks.update_error(h, mtl_checks.coefficients(weightings.sdmgrad(0.0), h),
                                 mgda) <= 1e-12
  c = mtl_checks.coefficients(weightings.sdmgrad(1e6), h)
  assert mtl_checks.update_error(h, c, np.full(4, 0.25)) <= 1e-5


def test_bad_lambda():
  with pytest.raises(ValueError, match="lam"):
    weightings.sdmgrad(-1.0)


@pytest.mark.slow
def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(SDMGRAD)
