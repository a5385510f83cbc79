"""CAME-Grad's weighting and its stages against float64 NumPy references and docs/design.md's properties."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import weightings
from tests import reference
from tests.tiers import grid

TASK_COUNTS = (2, 3, 5, 8)


def rel_err(got, want, h):
  """||got - want|| / ||want||, floored at 1e-6 sum_k ||h_k|| (for a zero reference)."""
  floor = 1e-6 * np.linalg.norm(h, axis=-1).sum()
  return np.linalg.norm(got - want) / max(np.linalg.norm(want), floor)


@functools.cache
def jitted_came(rho, kappa, nu):
  """CAME-Grad's weighting jitted once per hyperparameters (compiled once per K and dtype)."""
  return jax.jit(weightings.came(rho, kappa, nu))


def came_via_library(h, rho, kappa, nu, dtype):
  gram = jnp.asarray(h @ h.T, dtype)  # the library's own Gram is tested in test_gram
  c = np.asarray(jitted_came(rho, kappa, nu)(gram), np.float64)
  return c @ h


@pytest.mark.parametrize("k", grid(TASK_COUNTS, fast=[2, 8]))
def test_matches_float64_reference(x64, case, k):
  h = reference.task_gradients(case, k)
  want = reference.came_update(h, 0.5, 1.5, 0.2)
  got = came_via_library(h, 0.5, 1.5, 0.2, jnp.float64)
  assert rel_err(got, want, h) <= 1e-8


#: Float32 beyond 1e-4 (known limitation, 4.5e-3): with task scales 1e-6 vs 1e6 at
#: K = 5, S1's optimum depends on parts of <h_k, mu> 1e-6 the size of the rest,
#: which float32 row sums of the Gram keep to ~10% (the float64 solve on the same
#: float32-rounded Gram is exact to 1e-8).
FLOAT32_UNRESOLVED = {("badly_scaled", 5)}


@pytest.mark.parametrize("k", grid(TASK_COUNTS, fast=[8]))
def test_matches_reference_in_float32(request, case, k):
  if (case, k) in FLOAT32_UNRESOLVED:
    request.applymarker(pytest.mark.xfail(strict=True, reason="float32 cannot resolve 1e12 scale spread"))
  h = reference.task_gradients(case, k).astype(np.float32).astype(np.float64)
  want = reference.came_update(h, 0.5, 1.5, 0.2)
  got = came_via_library(h, 0.5, 1.5, 0.2, jnp.float32)
  assert rel_err(got, want, h) <= 1e-4


def random_h(k, seed, dim=30):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(k, dim)) + rng.normal() * rng.normal(size=dim)


@pytest.mark.parametrize("k", grid(TASK_COUNTS, fast=[5]))
@pytest.mark.parametrize("seed", range(4))
def test_rectified_direction_is_in_the_ball_and_no_worse(x64, k, seed):
  h = random_h(k, seed)
  rho = 0.5
  a = np.asarray(jax.jit(weightings.rectify)(jnp.asarray(h @ h.T), rho))
  u_rect, mu = a @ h, h.mean(0)
  assert np.linalg.norm(u_rect - mu) <= rho * np.linalg.norm(mu) * (1 + 1e-9)
  assert np.min(h @ u_rect) >= np.min(h @ mu) - 1e-9 * np.abs(h @ mu).max()


@pytest.mark.parametrize("k", grid(TASK_COUNTS, fast=[3]))
def test_rho0_kappa1_nu0_is_linear_scalarization(x64, k):
  h = random_h(k, 1)
  c = jitted_came(0.0, 1.0, 0.0)(jnp.asarray(h @ h.T))
  np.testing.assert_allclose(np.asarray(c) @ h, h.sum(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rho_kappa", grid([(0.0, 0.5), (0.5, 1.5), (2.0, 3.0)], fast=[(0.5, 1.5)]))
def test_nu1_is_linear_scalarization(x64, rho_kappa):
  rho, kappa = rho_kappa
  h = random_h(4, 2)
  c = jitted_came(rho, kappa, 1.0)(jnp.asarray(h @ h.T))
  np.testing.assert_allclose(np.asarray(c), np.ones(4), rtol=0, atol=1e-15)


@pytest.mark.parametrize("k", grid(TASK_COUNTS, fast=[5]))
def test_nu0_update_has_kappa_times_joint_norm(x64, k):
  h = random_h(k, 3)
  c = np.asarray(jitted_came(0.5, 1.5, 0.0)(jnp.asarray(h @ h.T)))
  np.testing.assert_allclose(np.linalg.norm(c @ h), 1.5 * np.linalg.norm(h.sum(0)), rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("rescale", grid([True, False], fast=[True]))
def test_s1_alone_is_cagrad(x64, rescale):
  h = random_h(5, 4)
  gram = jnp.asarray(h @ h.T)
  s1 = np.asarray(weightings.rectify(gram, 0.4))
  ca = np.asarray(weightings.cagrad(0.4, rescale=rescale)(gram))
  factor = 1 / (1 + 0.4**2) if rescale else 1.0
  np.testing.assert_allclose(ca, factor * s1, rtol=1e-12)


def test_stages_compose_to_came(x64):
  h = random_h(3, 5)
  gram = jnp.asarray(h @ h.T)
  staged = weightings.fuse(weightings.inject_energy(gram, weightings.rectify(gram, 0.3), 2.0), 0.4)
  np.testing.assert_allclose(staged, weightings.came(0.3, 2.0, 0.4)(gram), rtol=1e-14)


@pytest.mark.parametrize("scale", grid([1e-8, 3.0, 1e8], fast=[1e8]))
def test_coefficients_invariant_to_gram_scale(x64, scale):
  h = random_h(4, 6)
  gram = jnp.asarray(h @ h.T)
  w = jitted_came(0.5, 1.5, 0.2)  # the defaults
  np.testing.assert_allclose(w(scale * gram), w(gram), rtol=1e-9)


def test_tiny_task_is_still_rectified(x64):
  """A 1e-6-sized task in conflict: the rectification must not be switched off."""
  h = np.array([[1e-6, -1e-6, 0.0], [1.0, 0.2, 0.0], [0.5, 1.0, 0.1]])
  a = np.asarray(weightings.rectify(jnp.asarray(h @ h.T), 0.5))
  assert np.linalg.norm(a @ h - h.mean(0)) > 0.4 * np.linalg.norm(h.mean(0))
  want = reference.came_update(h, 0.5, 1.5, 0.2)
  got = np.asarray(weightings.came()(jnp.asarray(h @ h.T))) @ h
  assert rel_err(got, want, h) <= 1e-8


@pytest.mark.parametrize("k", grid((2, 3), fast=[2]))
def test_all_zero_gradients_give_zero_update(k):
  c = weightings.came()(jnp.zeros((k, k)))
  assert np.all(np.isfinite(c))
  diag = weightings.rectify(jnp.zeros((k, k)), 0.5)
  assert np.all(np.isfinite(diag))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_gram_is_promoted(dtype):
  h = random_h(3, 7).astype(np.float32)
  c = weightings.came()(jnp.asarray(h @ h.T, dtype))
  assert c.dtype == jnp.float32
  assert np.all(np.isfinite(c))


@pytest.mark.parametrize("factory,kwargs,name", [
    (weightings.came, {"rho": -0.1}, "rho"),
    (weightings.came, {"kappa": 0.0}, "kappa"),
    (weightings.came, {"kappa": float("nan")}, "kappa"),
    (weightings.came, {"nu": 1.5}, "nu"),
    (weightings.came, {"nu": -0.01}, "nu"),
    (weightings.cagrad, {"c": -1.0}, "c"),
])
def test_bad_hyperparameters_name_the_argument(factory, kwargs, name):
  with pytest.raises(ValueError, match=rf"^{name} must"):
    factory(**kwargs)


def test_bad_gram_is_rejected():
  with pytest.raises(ValueError, match="gram must be a square"):
    weightings.came()(jnp.ones((2, 3)))
  with pytest.raises(TypeError, match="gram must be floating"):
    weightings.came()(jnp.ones((2, 2), jnp.int32))
