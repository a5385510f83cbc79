"""UPGrad and its dual-cone projection, against SciPy's NNLS on the gradient vectors (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls

from came_grad_jax import weightings
from came_grad_jax._active_set import nonnegative_qp
from tests import mtl_checks
from tests.tiers import grid

UPGRAD = mtl_checks.jitted(weightings.upgrad())


def project_onto_dual_cone(h: np.ndarray, g: np.ndarray) -> np.ndarray:
  """Weights w with ``w @ h = argmin_{x : h x >= 0} ||x - g||``, ``g = u @ h``, by Moreau's theorem.

  ``x = g + h^T lambda`` with ``lambda = argmin_{lambda >= 0} ||g + h^T lambda||``
  (SciPy's NNLS on the vectors).
  """
  lam, _ = nnls(h.T, -g) if np.any(h) else (np.zeros(h.shape[0]), 0.0)
  return lam


def upgrad_reference(h: np.ndarray) -> np.ndarray:
  k = h.shape[0]
  return sum(np.eye(k)[i] + project_onto_dual_cone(h, h[i]) for i in range(k)) / k


def test_matches_float64_reference(x64):
  mtl_checks.assert_all_below(mtl_checks.reference_errors(UPGRAD, upgrad_reference), 1e-12)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  mtl_checks.assert_matches_reference(UPGRAD if jit else weightings.upgrad(), upgrad_reference,
                                      1e-12)


def test_non_conflicting_on_random_grams(x64):
  for seed in range(12):
    h = mtl_checks.random_gradients(seed)
    c = mtl_checks.coefficients(UPGRAD, h)
    assert mtl_checks.worst_conflict(h, c) <= 1e-12
    assert mtl_checks.update_error(h, c, upgrad_reference(h)) <= 1e-12


def test_mean_gradient_without_conflicts(x64):
  h = np.abs(mtl_checks.gradients("random", 4))  # pairwise non-negative inner products
  np.testing.assert_allclose(mtl_checks.coefficients(UPGRAD, h), np.full(4, 0.25), rtol=1e-14)


def test_nonnegative_qp_certifies_optimality(x64):
  solve = jax.jit(nonnegative_qp)
  a = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
  z, optimal = solve(a, jnp.array([-1.0, -1.0]))  # unbounded along (1, 1)
  assert not bool(optimal)
  z, optimal = solve(jnp.eye(2), jnp.array([-1.0, 2.0]))
  assert bool(optimal)
  np.testing.assert_array_equal(z, [1.0, 0.0])


@pytest.mark.slow
def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(UPGRAD)
