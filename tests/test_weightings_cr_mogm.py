"""CR-MOGM: an EMA of any weighting's coefficients, against the recursion in float64."""

import jax.numpy as jnp
import numpy as np
import pytest

import came_grad_jax as cg
from came_grad_jax import weightings
from tests import mtl_checks


@pytest.mark.slow
@pytest.mark.parametrize("base", ["mgda", "upgrad", "pcgrad"])
def test_is_the_ema_of_the_base_coefficients(x64, base):
  inner = getattr(weightings, base)()
  smoothed = mtl_checks.jitted(weightings.ema_weighting(getattr(weightings, base)(), beta=0.7))
  inner = weightings.as_stateful(inner)
  rng = np.random.default_rng(0)
  state, inner_state, want = smoothed.init(3), inner.init(3), None
  for _ in range(4):
    h = rng.normal(size=(3, 4)) * np.exp(rng.normal(size=(3, 1)))
    gram = jnp.asarray(h @ h.T)
    c, state = smoothed.apply(gram, state)
    raw, inner_state = inner.apply(gram, inner_state)  # same key sequence for PCGrad
    raw = np.asarray(raw)
    want = raw if want is None else 0.7 * want + 0.3 * raw
    np.testing.assert_allclose(np.asarray(c), want, rtol=1e-12, atol=1e-14 * np.abs(want).max())


@pytest.mark.slow
def test_beta_zero_is_the_base(x64):
  h = mtl_checks.gradients("random", 4)
  c = mtl_checks.coefficients(weightings.ema_weighting(weightings.mgda(), 0.0), h)
  np.testing.assert_allclose(c, mtl_checks.coefficients(weightings.mgda(), h), rtol=1e-12)


def test_transformation_and_errors(x64):
  tx = cg.cr_mogm(0.5, num_tasks=2)
  state = tx.init(jnp.zeros(2))
  _, state = tx.update(jnp.array([[1.0, 0.0], [0.0, 2.0]]), state)  # MGDA: (0.8, 0.2)
  _, state = tx.update(jnp.array([[1.0, 0.0], [0.0, 1.0]]), state)  # MGDA: (0.5, 0.5)
  np.testing.assert_allclose(state.weighting_state.coefficients, [0.65, 0.35], rtol=1e-12)
  with pytest.raises(ValueError, match="num_tasks"):
    cg.cr_mogm()
  with pytest.raises(ValueError, match="beta"):
    weightings.ema_weighting(weightings.mgda(), 1.0)
