"""PCD: the mean gradient projected on the protected tasks' dual cone, against SciPy's NNLS (float64)."""

import numpy as np
import pytest
from scipy.optimize import nnls

from came_grad_jax import weightings
from tests import mtl_checks

PROTECTED = (0, 2)
PCD = mtl_checks.jitted(weightings.pcd(PROTECTED))


def pcd_reference(h: np.ndarray, protected=PROTECTED) -> np.ndarray:
  """``lambda* = argmin_{lambda >= 0} ||mu + H_P^T lambda||`` on the vectors, then
  ``c = 1/K + lambda*`` (on the protected tasks). Zero gradients take no part."""
  k = len(h)
  p = [i for i in protected if i < k and np.linalg.norm(h[i]) > 0]
  c = np.full(k, 1.0 / k)
  if p:
    # Scaled columns (unit gradients) keep NNLS well conditioned for badly scaled tasks.
    norms = np.linalg.norm(h[p], axis=1)
    z, _ = nnls((h[p] / norms[:, None]).T, -h.mean(0))
    c[p] += z / norms
  return c


def test_matches_float64_reference(x64):
  mtl_checks.assert_all_below(mtl_checks.reference_errors(PCD, pcd_reference, ks=(4,)), 1e-10)


def test_protected_tasks_never_conflict(x64):
  for seed in range(12):
    h = mtl_checks.random_gradients(seed)
    d = mtl_checks.coefficients(PCD, h) @ h
    scale = np.linalg.norm(h, axis=1).sum() * np.linalg.norm(d) + 1e-300
    assert min(h[i] @ d for i in PROTECTED) >= -1e-12 * scale


def test_every_task_protected_is_dualproj(x64):
  h = mtl_checks.gradients("random", 4)
  c = mtl_checks.coefficients(weightings.pcd((0, 1, 2, 3)), h)
  assert mtl_checks.update_error(h, c, mtl_checks.coefficients(weightings.dualproj(), h)) <= 1e-12


def test_bad_indices():
  with pytest.raises(ValueError, match="protected"):
    weightings.pcd(())
  with pytest.raises(ValueError, match="protected"):
    weightings.pcd((1, 1))
  with pytest.raises(ValueError, match="K = 2"):
    weightings.pcd((3,))(np.eye(2))


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(PCD)
