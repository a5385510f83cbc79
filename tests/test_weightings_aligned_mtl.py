"""Aligned-MTL against a float64 SVD of the gradient matrix, and its alignment property."""

import numpy as np
import pytest

from came_grad_jax import weightings
from tests import mtl_checks
from tests.tiers import grid

ALIGNED = mtl_checks.jitted(weightings.aligned_mtl())


def aligned_reference(h: np.ndarray, scale: str = "min") -> np.ndarray:
  """``c`` with ``c^T H = 1^T H_hat``, ``H_hat = sigma U_r V_r^T`` from the SVD ``H = U S V^T``.

  The rank keeps singular values with ``s^2 > K eps s_max^2`` (the authors'
  eigenvalue threshold); ``sigma`` is the smallest kept one, or the root of
  the lower median or of the mean of the kept ``s^2``.
  """
  k = h.shape[0]
  u, s, _ = np.linalg.svd(h, full_matrices=False)
  kept = s**2 > k * np.finfo(float).eps * s.max() ** 2 if s.max() > 0 else s > 0
  s_kept = np.sort(s[kept])
  if s_kept.size == 0:
    return np.zeros(k)
  sigma = {"min": s_kept[0], "median": s_kept[(s_kept.size - 1) // 2],
           "rmse": np.sqrt(np.mean(s_kept**2))}[scale]
  u_r = u[:, kept]
  return sigma * u_r @ ((u_r.T @ np.ones(k)) / s[kept])


def test_matches_float64_reference(x64):
  errors = mtl_checks.reference_errors(ALIGNED, aligned_reference)
  # Tasks 1e-6 vs 1e6: the eigenvalues of M below eps * lambda_max carry an
  # absolute error eps * lambda_max (a Gram-only method squares the condition
  # number that an SVD of the gradients would see): ~1e-5 in float64.
  badly_scaled = {key: errors.pop(key) for key in list(errors) if key[1] == "badly_scaled"}
  mtl_checks.assert_all_below(errors, 1e-9)
  mtl_checks.assert_all_below(badly_scaled, 1e-4)


@pytest.mark.parametrize("scale", ["median", "rmse"])
def test_scale_modes(x64, scale):
  mtl_checks.assert_matches_reference(weightings.aligned_mtl(scale),
                                      lambda h: aligned_reference(h, scale), 1e-12, k=5)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  mtl_checks.assert_matches_reference(ALIGNED if jit else weightings.aligned_mtl(),
                                      aligned_reference, 1e-12)


def test_orthogonal_equal_norms_is_linear_scalarization(x64):
  h = 3.0 * np.eye(4, 10)
  np.testing.assert_allclose(mtl_checks.coefficients(ALIGNED, h), np.ones(4), rtol=1e-14)


def test_unknown_scale_is_rejected():
  with pytest.raises(ValueError, match="scale"):
    weightings.aligned_mtl("max")


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(ALIGNED)
