"""DualProj: the mean gradient projected onto the dual cone, against SciPy's NNLS (float64)."""

import numpy as np
import pytest

from came_grad_jax import weightings
from tests import mtl_checks
from tests.test_weightings_upgrad import project_onto_dual_cone
from tests.tiers import grid

DUALPROJ = mtl_checks.jitted(weightings.dualproj())


def dualproj_reference(h: np.ndarray) -> np.ndarray:
  k = h.shape[0]
  return np.full(k, 1.0 / k) + project_onto_dual_cone(h, h.mean(0))


def test_matches_float64_reference(x64):
  mtl_checks.assert_all_below(mtl_checks.reference_errors(DUALPROJ, dualproj_reference), 1e-12)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_jit_and_eager(x64, jit):
  mtl_checks.assert_matches_reference(DUALPROJ if jit else weightings.dualproj(),
                                      dualproj_reference, 1e-12)


def test_projection_on_random_grams(x64):
  for seed in range(12):
    h = mtl_checks.random_gradients(seed)
    c = mtl_checks.coefficients(DUALPROJ, h)
    assert mtl_checks.worst_conflict(h, c) <= 1e-12
    d, mean = c @ h, h.mean(0)
    # The projection onto a cone: d - mean is orthogonal to d (and d is no farther than 0).
    assert abs((d - mean) @ d) <= 1e-10 * (np.abs(h).sum() ** 2)
    assert np.linalg.norm(d - mean) <= np.linalg.norm(mean) * (1 + 1e-12)


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(DUALPROJ)
