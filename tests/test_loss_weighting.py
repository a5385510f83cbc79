"""Loss weightings (uncertainty, DWA, FAMO) against float64 NumPy references of their papers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from came_grad_jax import loss_weighting

LOSSES = np.array([[2.0, 1.0, 0.5], [1.5, 0.9, 0.6], [1.0, 0.85, 0.4], [0.8, 0.8, 0.45],
                   [0.5, 0.7, 0.3]])


def run(weighting, losses=LOSSES, jit=True):
  update = jax.jit(weighting.update) if jit else weighting.update
  state = weighting.init(losses.shape[1])
  weights = []
  for step in losses:
    w, state = update(jnp.asarray(step), state)
    weights.append(np.asarray(w))
  return np.stack(weights), state


def uncertainty_reference(losses, lr):
  """Kendall et al. 2018: weights 1/2 exp(-s), s <- s - lr d/ds (1/2 exp(-s) L + 1/2 s)."""
  s, out = np.zeros(losses.shape[1]), []
  for step in losses:
    out.append(0.5 * np.exp(-s))
    s = s - lr * 0.5 * (1 - np.exp(-s) * step)
  return np.stack(out), s


def dwa_reference(losses, temperature):
  """Liu et al. 2019, eq. 6: w(t) = K softmax(L(t-1) / L(t-2) / T); w = 1 for t < 2."""
  k, out = losses.shape[1], []
  for t in range(len(losses)):
    if t < 2:
      out.append(np.ones(k))
    else:
      r = np.exp(losses[t - 1] / losses[t - 2] / temperature)
      out.append(k * r / r.sum())
  return np.stack(out)


def famo_reference(losses, lr):
  """Liu et al. 2023, Alg. 1 with plain SGD on the logits: w = (z / L) / sum(z / L)."""
  xi, out = np.zeros(losses.shape[1]), []
  for t, step in enumerate(losses):
    if t > 0:
      z = np.exp(xi) / np.exp(xi).sum()
      delta = np.log(losses[t - 1]) - np.log(step)
      xi = xi - lr * z * (delta - z @ delta)
    z = np.exp(xi) / np.exp(xi).sum()
    out.append((z / step) / (z / step).sum())
  return np.stack(out)


@pytest.mark.parametrize("jit", [True, False])
def test_uncertainty_matches_reference(x64, jit):
  weights, state = run(loss_weighting.uncertainty_weighting(optax.sgd(0.3)), jit=jit)
  want, s = uncertainty_reference(LOSSES, 0.3)
  np.testing.assert_allclose(weights, want, rtol=1e-14)
  np.testing.assert_allclose(state.log_variance, s, rtol=1e-14)


def test_uncertainty_drives_log_variance_to_log_loss(x64):
  weighting = loss_weighting.uncertainty_weighting(optax.sgd(0.5))
  _, state = run(weighting, np.tile([[4.0, 0.25]], (200, 1)))
  np.testing.assert_allclose(state.log_variance, np.log([4.0, 0.25]), atol=1e-6)


@pytest.mark.parametrize("jit", [True, False])
def test_dwa_matches_reference(x64, jit):
  weights, _ = run(loss_weighting.dwa(2.0), jit=jit)
  np.testing.assert_allclose(weights, dwa_reference(LOSSES, 2.0), rtol=1e-14)


@pytest.mark.parametrize("jit", [True, False])
def test_famo_matches_reference(x64, jit):
  weights, _ = run(loss_weighting.famo(optax.sgd(0.1), eps=0.0), jit=jit)
  np.testing.assert_allclose(weights, famo_reference(LOSSES, 0.1), rtol=1e-13)


def test_famo_favours_the_task_that_improves_least(x64):
  losses = np.stack([np.array([1.0, 1.0]) * [0.9**t, 0.99**t] for t in range(50)])
  weights, state = run(loss_weighting.famo(), losses)
  assert state.logits[1] > state.logits[0]  # the slower task's logit went up
  assert np.all(np.isclose(weights.sum(1), 1.0))


def test_weights_carry_no_gradient():
  weighting = loss_weighting.famo()
  state = weighting.init(2)

  def loss(p):
    losses = jnp.stack([p**2, (p - 1.0) ** 2]) + 1.0
    weights, _ = weighting.update(losses, state)
    return jnp.sum(weights * losses), weights

  grad, weights = jax.grad(loss, has_aux=True)(2.0)
  np.testing.assert_allclose(grad, weights[0] * 4.0 + weights[1] * 2.0, rtol=1e-6)


def test_bad_input_is_rejected():
  with pytest.raises(ValueError, match="temperature"):
    loss_weighting.dwa(0.0)
  weighting = loss_weighting.dwa()
  with pytest.raises(ValueError, match="losses"):
    weighting.update(jnp.ones(3), weighting.init(2))
