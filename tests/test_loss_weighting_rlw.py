"""RLW, GLS and STCH loss weightings against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import came_grad_jax as cg
from came_grad_jax import loss_weighting


def test_rlw_weights_are_softmax_of_normals_from_the_state_key(x64):
  r = cg.make_method("rlw", key=3)
  state = r.init(3)
  key = jax.random.key(3)
  seen = []
  for _ in range(3):
    weights, state = jax.jit(r.update)(jnp.array([1.0, 2.0, 3.0]), state)
    key, sub = jax.random.split(key)
    z = np.asarray(jax.random.normal(sub, (3,)), np.float64)
    want = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(weights, want, rtol=1e-12)
    seen.append(np.asarray(weights))
  assert len({w.tobytes() for w in seen}) == 3


def test_rlw_keeps_its_key_on_bad_losses():
  r = loss_weighting.rlw(0)
  state = r.init(2)
  weights, new = r.update(jnp.array([np.nan, 1.0]), state)
  assert np.all(np.isnan(weights))
  np.testing.assert_array_equal(jax.random.key_data(new.key), jax.random.key_data(state.key))


def test_gls_is_the_gradient_of_the_geometric_mean(x64):
  rng = np.random.default_rng(0)
  for _ in range(5):
    losses = np.exp(rng.normal(size=4) * 3)
    weights, _ = loss_weighting.gls().update(jnp.asarray(losses), None)
    # d/dL_k (prod L)^(1/K) = (prod L)^(1/K) / (K L_k), in float64 NumPy.
    want = np.prod(losses) ** 0.25 / (4 * losses)
    np.testing.assert_allclose(weights, want, rtol=1e-13)


def test_gls_refuses_non_positive_losses():
  weights, _ = loss_weighting.gls().update(jnp.array([1.0, 0.0]), None)
  assert np.all(np.isnan(weights))


def stch_reference(all_losses, mu, warmup):
  """Lin et al. 2024, Eq. (10) as the authors' LibMTL code runs it: log losses during the
  warm-up, then K mu logsumexp((log L - log z) / mu), z the warm-up's mean losses."""
  out, total = [], np.zeros(len(all_losses[0]))
  for t, losses in enumerate(all_losses):
    if t < warmup:
      out.append(1.0 / losses)
      total += losses
      continue
    z = total / warmup if warmup else np.ones_like(losses)
    v = (np.log(losses) - np.log(z)) / mu
    s = np.exp(v - v.max()) / np.exp(v - v.max()).sum()
    out.append(len(losses) * s / losses)
  return out


@pytest.mark.parametrize("mu,warmup", [(1.0, 0), (0.2, 0), (0.5, 2)])
def test_stch_matches_float64_reference(x64, mu, warmup):
  rng = np.random.default_rng(1)
  all_losses = [np.exp(rng.normal(size=3)) for _ in range(5)]
  s = loss_weighting.stch(mu, warmup)
  state = s.init(3)
  for losses, want in zip(all_losses, stch_reference(all_losses, mu, warmup)):
    weights, state = jax.jit(s.update)(jnp.asarray(losses), state)
    np.testing.assert_allclose(weights, want, rtol=1e-12)


@pytest.mark.slow
def test_stch_weights_are_the_gradient_of_the_objective(x64):
  losses = jnp.array([0.5, 2.0, 1.5])
  weights, _ = loss_weighting.stch(0.3).update(losses, loss_weighting.stch(0.3).init(3))
  grad = jax.grad(lambda l: 3 * 0.3 * jax.nn.logsumexp(jnp.log(l) / 0.3))(losses)
  np.testing.assert_allclose(weights, grad, rtol=1e-12)


def test_stch_bad_hyperparameters():
  with pytest.raises(ValueError, match="mu"):
    loss_weighting.stch(0.0)
  with pytest.raises(ValueError, match="warmup_steps"):
    loss_weighting.stch(1.0, -1)
