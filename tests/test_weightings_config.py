"""ConFIG: the update against a float64 NumPy reference built from the unit gradients' pseudo-inverse."""

import numpy as np
import pytest

from came_grad_jax import weightings
from tests import mtl_checks

CONFIG = mtl_checks.jitted(weightings.config())


def config_update(h: np.ndarray, p: np.ndarray | None = None) -> np.ndarray:
  """Liu et al. 2025, Eq. 2, on the vectors: ``d = (sum_k <h_k, t>) t``, ``t ~ pinv(U) p``."""
  norms = np.linalg.norm(h, axis=1)
  units = np.where(norms[:, None] > 0, h / np.where(norms > 0, norms, 1.0)[:, None], 0.0)
  p = np.ones(len(h)) if p is None else p
  x = np.linalg.pinv(units) @ p
  if np.linalg.norm(x) == 0:
    return np.zeros(h.shape[1])
  t = x / np.linalg.norm(x)
  return np.sum(h @ t) * t


def relative_error(h, c, d_ref) -> float:
  scale = max(np.linalg.norm(d_ref), 1e-12 * np.linalg.norm(h, axis=1).sum(), 1e-300)
  return float(np.linalg.norm(c @ h - d_ref) / scale)


@pytest.mark.parametrize("k", [2, 4])
def test_matches_float64_reference(x64, k):
  errors = {case: relative_error(h, mtl_checks.coefficients(CONFIG, h), config_update(h))
            for case in mtl_checks.CASES for h in [mtl_checks.gradients(case, k)]}
  mtl_checks.assert_all_below(errors, 1e-9)


def test_preference_vector(x64):
  h = mtl_checks.gradients("random", 3)
  p = np.array([1.0, 2.0, 0.5])
  c = mtl_checks.coefficients(weightings.config(p), h)
  assert relative_error(h, c, config_update(h, p)) <= 1e-10
  # The cosines with the update are proportional to p.
  d = c @ h
  cosines = h @ d / (np.linalg.norm(h, axis=1) * np.linalg.norm(d))
  np.testing.assert_allclose(cosines / cosines[0], p / p[0], rtol=1e-10)


def test_non_conflicting_only_for_independent_gradients(x64):
  for seed in range(8):
    h = mtl_checks.random_gradients(seed, num_tasks=3)
    if h.shape[1] >= 3:
      assert mtl_checks.worst_conflict(h, mtl_checks.coefficients(CONFIG, h)) <= 1e-12
  # More tasks than dimensions: the least-squares direction can conflict.
  rng = np.random.default_rng(0)
  worst = max(mtl_checks.worst_conflict(h, mtl_checks.coefficients(CONFIG, h))
              for h in rng.normal(size=(20, 5, 2)))
  assert worst > 1e-3


def test_direction_is_scale_invariant(x64):
  h = mtl_checks.gradients("random", 4)
  scales = np.array([1e-3, 1.0, 7.0, 1e2])
  d1 = mtl_checks.coefficients(CONFIG, h) @ h
  d2 = mtl_checks.coefficients(CONFIG, h * scales[:, None]) @ (h * scales[:, None])
  assert 1 - d1 @ d2 / (np.linalg.norm(d1) * np.linalg.norm(d2)) <= 1e-12


def test_bad_preference():
  with pytest.raises(ValueError, match="preference"):
    weightings.config([1.0, np.nan])
  with pytest.raises(ValueError, match="preference has 2 entries"):
    weightings.config([1.0, 1.0])(np.eye(3))


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(CONFIG)
