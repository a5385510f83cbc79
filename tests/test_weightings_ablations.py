"""CAME-Grad ablations: S1, S1+S2, S1+S3 against float64 references built from tests/reference.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls

from came_grad_jax import weightings
from tests import mtl_checks, reference
from tests.tiers import grid

RHO, KAPPA, NU = 0.5, 1.5, 0.2


@jax.jit
def ablations(gram):
  return (weightings.came_s1(RHO)(gram), weightings.came_s1_s2(RHO, KAPPA)(gram),
          weightings.came_s1_s3(RHO, NU)(gram))


def rectified(h: np.ndarray, rho: float) -> np.ndarray:
  """``u_rect = mu + rho ||mu|| h_alpha* / ||h_alpha*||`` (docs/design.md, S1), float64."""
  mu = h.mean(0)
  if rho == 0 or not np.any(mu):
    return mu
  alpha = reference.solve_dual(h @ h.T, rho)
  h_alpha = alpha @ h
  if np.linalg.norm(h_alpha) <= 1e-12 * (alpha @ np.linalg.norm(h, axis=1)):
    lam, _ = nnls(h.T, -mu)  # Pareto-stationary: the optimal point closest to mu (Moreau)
    return mu + h.T @ lam
  return mu + rho * np.linalg.norm(mu) * h_alpha / np.linalg.norm(h_alpha)


def ablation_references(h: np.ndarray) -> tuple:
  u_rect, g_joint = rectified(h, RHO), h.sum(0)
  n = np.linalg.norm(u_rect)
  u_en = KAPPA * np.linalg.norm(g_joint) / n * u_rect if n > 0 else 0 * u_rect
  return u_rect, u_en, (1 - NU) * u_rect + NU * g_joint


@pytest.mark.parametrize("k, case", [(k, case) for k in (2, 4) for case in mtl_checks.CASES[:-1]])
def test_matches_float64_reference(x64, k, case):
  h = mtl_checks.gradients(case, k)
  got = [np.asarray(c) @ h for c in ablations(jnp.asarray(h @ h.T))]
  for name, d, want in zip(("S1", "S1+S2", "S1+S3"), got, ablation_references(h)):
    floor = 1e-6 * np.linalg.norm(h, axis=1).sum()
    err = np.linalg.norm(d - want) / max(np.linalg.norm(want), floor)
    assert err <= 1e-8, (name, err)


@pytest.mark.parametrize("jit", grid([True, False], fast=[True]))
def test_stages_compose_to_the_named_methods(x64, jit):
  def pairs(gram):
    return ((weightings.came_s1(RHO)(gram), weightings.cagrad(RHO, rescale=False)(gram)),
            (weightings.came_stages(RHO, KAPPA, NU)(gram), weightings.came(RHO, KAPPA, NU)(gram)))

  h = mtl_checks.gradients("random", 2)
  for ablation, method in (jax.jit(pairs) if jit else pairs)(jnp.asarray(h @ h.T)):
    np.testing.assert_allclose(ablation, method, rtol=1e-12)


@pytest.mark.parametrize("kwargs, name", [({"kappa": 0.0}, "kappa"), ({"nu": 1.5}, "nu"),
                                          ({"rho": -1.0}, "rho")])
def test_bad_hyperparameters_are_rejected(kwargs, name):
  with pytest.raises(ValueError, match=name):
    weightings.came_stages(**{"rho": 0.5, **kwargs})


@pytest.mark.slow
def test_finite_in_float32():
  for weighting in (weightings.came_s1(), weightings.came_s1_s2(), weightings.came_s1_s3()):
    mtl_checks.assert_finite_in_float32(mtl_checks.jitted(weighting), k=2)
