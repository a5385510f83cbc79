"""Nash-MTL: the fixed point ``M alpha = 1 / alpha``, against SciPy's root finder (float64)."""

import numpy as np
import pytest
from scipy.optimize import linprog, root

from came_grad_jax import weightings
from tests import mtl_checks
from tests.tiers import grid

NASH = mtl_checks.jitted(weightings.nash_mtl())


def zero_in_hull(u: np.ndarray) -> bool:
  """Whether 0 is a convex combination of the rows of ``u`` (an LP feasibility problem)."""
  k = u.shape[0]
  res = linprog(np.zeros(k), A_eq=np.vstack([u.T, np.ones((1, k))]),
                b_eq=np.concatenate([np.zeros(u.shape[1]), [1.0]]), bounds=[(0, None)] * k)
  return res.status == 0


def nash_reference(h: np.ndarray) -> np.ndarray:
  """``alpha > 0`` with ``(H H^T alpha)_k = 1 / alpha_k``, zero gradients left out; 0 if none exists.

  Solved by SciPy's ``root`` in ``x = log(||h_k|| alpha_k)`` (so the system is
  ``(C e^x) e^x = 1`` with the cosine matrix C, whatever the tasks' scales).
  """
  live, norms, u = mtl_checks.unit_rows(h)
  alpha = np.zeros(h.shape[0])
  if live.size == 0 or zero_in_hull(u):
    return alpha
  cosine = u @ u.T

  def residual(x):
    return (cosine @ np.exp(x)) * np.exp(x) - 1.0

  def jacobian(x):
    e = np.exp(x)
    return e[:, None] * cosine * e[None, :] + np.diag((cosine @ e) * e)

  x = root(residual, np.zeros(live.size), jac=jacobian).x
  for _ in range(3):  # Newton polish to full float64 precision
    x = x - np.linalg.solve(jacobian(x), residual(x))
  assert np.abs(residual(x)).max() < 1e-13
  alpha[live] = np.exp(x) / norms[live]
  return alpha


def test_matches_float64_reference(x64):
  errors = mtl_checks.reference_errors(NASH, nash_reference)
  mtl_checks.assert_all_below(errors, 1e-10)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  mtl_checks.assert_matches_reference(NASH if jit else weightings.nash_mtl(), nash_reference, 1e-12)


def test_fixed_point_on_random_grams(x64):
  for seed in range(12):
    h = mtl_checks.random_gradients(seed)
    c = mtl_checks.coefficients(NASH, h)
    if np.all(c == 0):  # Pareto-stationary: no solution
      assert zero_in_hull(h / np.linalg.norm(h, axis=1, keepdims=True))
      continue
    assert np.all(c > 0)
    np.testing.assert_allclose((h @ h.T @ c) * c, 1.0, rtol=1e-10)


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(NASH)
