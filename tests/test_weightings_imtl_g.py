"""IMTL-G against the paper's closed form in float64, and its equal-projection property."""

import numpy as np
import pytest

from came_grad_jax import weightings
from tests import mtl_checks
from tests.tiers import grid

IMTL_G = mtl_checks.jitted(weightings.imtl_g())


def imtl_g_reference(h: np.ndarray) -> np.ndarray:
  """``alpha_{2:K} = g_1 U^T (D U^T)^-1``, ``alpha_1 = 1 - sum alpha_{2:K}`` (Liu et al. 2021, eq. 6).

  ``D`` has rows ``g_1 - g_k`` and ``U`` rows ``u_1 - u_k``; zero gradients are
  left out (their unit vector is undefined).
  """
  live, _, u = mtl_checks.unit_rows(h)
  alpha = np.zeros(h.shape[0])
  if live.size == 0:
    return alpha
  g = h[live]
  d, unit = g[0] - g[1:], u[0] - u[1:]
  rest = g[0] @ unit.T @ np.linalg.inv(d @ unit.T) if live.size > 1 else np.zeros(0)
  alpha[live] = np.concatenate([[1.0 - rest.sum()], rest])
  return alpha


def test_matches_float64_reference(x64):
  errors = mtl_checks.reference_errors(IMTL_G, imtl_g_reference)
  mtl_checks.assert_all_below(errors, 1e-9)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  mtl_checks.assert_matches_reference(IMTL_G if jit else weightings.imtl_g(), imtl_g_reference,
                                      1e-12)


def test_equal_projections_on_random_grams(x64):
  for seed in range(12):
    h = mtl_checks.random_gradients(seed)  # P < K - 1 included: then d = 0
    c = mtl_checks.coefficients(IMTL_G, h)
    np.testing.assert_allclose(c.sum(), 1.0, rtol=1e-12)
    d = c @ h
    projections = h @ d / np.linalg.norm(h, axis=1)
    scale = np.abs(c) @ np.linalg.norm(h, axis=1)
    np.testing.assert_allclose(projections, projections[0], atol=1e-12 * scale)


def test_more_tasks_than_dimensions_gives_zero_update(x64):
  h = mtl_checks.random_gradients(3)[:, :2]  # 4 generic vectors in a plane
  c = mtl_checks.coefficients(IMTL_G, h)
  np.testing.assert_allclose(c.sum(), 1.0, rtol=1e-12)
  assert np.linalg.norm(c @ h) <= 1e-12 * np.abs(c) @ np.linalg.norm(h, axis=1)


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(IMTL_G)
