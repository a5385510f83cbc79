"""FairGrad: the alpha-fair equation ``M w = w^(-1/alpha)`` against SciPy's least squares (float64)."""

import numpy as np
import pytest
from scipy.optimize import least_squares

from came_grad_jax import weightings
from tests import mtl_checks
from tests.tiers import grid

FAIRGRAD = {alpha: mtl_checks.jitted(weightings.fairgrad(alpha)) for alpha in (0.5, 1.0, 2.0, 5.0)}


def fairgrad_reference(h: np.ndarray, alpha: float) -> np.ndarray:
  """Ban & Ji 2024, Eq. (8): ``G^T G w = w^(-1/alpha)``, solved as the authors do (least squares,
  w >= 0), from a start scaled to the solution's size and polished to SciPy's tightest tolerances."""
  gram = h @ h.T
  k = len(h)
  start = np.full(k, (np.ones(k) @ gram @ np.ones(k) / k) ** (-alpha / (alpha + 1)))
  res = least_squares(lambda w: gram @ w - w ** (-1.0 / alpha), start, bounds=(1e-300, np.inf),
                      xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10000)
  return res.x


@pytest.mark.parametrize("alpha", grid([0.5, 2.0, 5.0], fast=[0.5, 5.0]))
@pytest.mark.parametrize("k", [2, 4])
def test_matches_float64_reference(x64, alpha, k):
  for seed in range(3):
    h = mtl_checks.random_gradients(seed + 10 * k, num_tasks=k)
    if h.shape[1] < k:  # keep the equation solvable (not Pareto-stationary)
      continue
    c = mtl_checks.coefficients(FAIRGRAD[alpha], h)
    assert mtl_checks.update_error(h, c, fairgrad_reference(h, alpha)) <= 1e-7
    # The equation itself holds to rounding of <h_k, d> (relative to its terms' size).
    norms = np.linalg.norm(h, axis=1)
    residual = h @ (h.T @ c) - c ** (-1.0 / alpha)
    assert np.max(np.abs(residual) / (norms * (np.abs(c) @ norms))) <= 1e-12


@pytest.mark.slow
def test_alpha_one_is_nash_mtl(x64):
  nash = mtl_checks.jitted(weightings.nash_mtl())
  for case in ("random", "badly_scaled", "nearly_parallel"):
    h = mtl_checks.gradients(case, 4)
    c = mtl_checks.coefficients(FAIRGRAD[1.0], h)
    assert mtl_checks.update_error(h, c, mtl_checks.coefficients(nash, h)) <= 1e-9


def test_every_task_gains(x64):
  for seed in range(12):
    h = mtl_checks.random_gradients(seed)
    c = mtl_checks.coefficients(FAIRGRAD[2.0], h)
    assert mtl_checks.worst_conflict(h, c) <= 1e-12


def test_edge_cases(x64):
  c = mtl_checks.coefficients(FAIRGRAD[2.0], mtl_checks.gradients("one_zero", 3))
  assert c[-1] == 0 and np.all(c[:-1] > 0)
  assert np.all(mtl_checks.coefficients(FAIRGRAD[2.0], mtl_checks.gradients("opposed", 2)) == 0)
  assert np.all(mtl_checks.coefficients(FAIRGRAD[2.0], mtl_checks.gradients("all_zero", 3)) == 0)


def test_bad_alpha():
  with pytest.raises(ValueError, match="alpha"):
    weightings.fairgrad(0.0)


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(FAIRGRAD[2.0])
