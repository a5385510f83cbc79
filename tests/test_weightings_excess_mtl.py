"""ExcessMTL and GradNorm: their weight recursions against float64 NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import came_grad_jax as cg


def excess_reference(gs, eta, eps, w):
  """He et al. 2024, Alg. 1: AdaGrad excess risks, exponentiated-gradient weights summing to K."""
  k = len(gs[0])
  acc, q, r0, out = np.zeros_like(gs[0]), np.ones(k), None, []
  for g in gs:
    acc = acc + g**2
    r = np.sum(g**2 / np.sqrt(acc + eps), axis=1)
    r0 = r if r0 is None else r0
    q = q * np.exp(eta * r / r0)
    q = k * q / q.sum()
    out.append((q * w) @ g)
  return out


def test_excess_mtl_matches_float64_reference(x64):
  rng = np.random.default_rng(0)
  gs = [rng.normal(size=(3, 6)) * np.array([[1.0], [5.0], [0.2]]) for _ in range(4)]
  w = np.array([1.0, 0.5, 2.0])
  tx = cg.excess_mtl(0.5, w, eps=1e-7)
  state = tx.init(jnp.zeros(6))
  step = jax.jit(tx.update)
  for g, want in zip(gs, excess_reference(gs, 0.5, 1e-7, w)):
    d, state = step(jnp.asarray(g), state)
    assert np.linalg.norm(np.asarray(d) - want) <= 1e-12 * np.linalg.norm(want)
  assert abs(float(state.weights.sum()) - 3) <= 1e-12


def gradnorm_reference(gs, losses, alpha, lr, w, layer):
  """Chen et al. 2018, Alg. 1 with plain gradient steps on the weights, renormalised to sum K."""
  k = len(w)
  q, l0, out = np.ones(k), None, []
  for g, loss in zip(gs, losses):
    out.append((q * w) @ g)
    norms = w * np.linalg.norm(g[:, layer], axis=1)
    l0 = loss if l0 is None else l0
    r = (loss / l0) / np.mean(loss / l0)
    big_g = q * norms
    target = big_g.mean() * r**alpha
    q = np.maximum(q - lr * np.sign(big_g - target) * norms, 0)
    q = k * q / q.sum()
  return out, q


def test_gradnorm_matches_float64_reference(x64):
  rng = np.random.default_rng(1)
  gs = [rng.normal(size=(3, 5)) * np.array([[1.0], [4.0], [0.3]]) for _ in range(4)]
  losses = [np.array([1.0, 2.0, 0.5]) * np.exp(-0.1 * t * np.array([1.0, 3.0, 0.5]))
            for t in range(4)]
  w = np.array([1.0, 0.5, 2.0])
  tx = cg.gradnorm(alpha=1.5, lr=0.05, layer="shared", task_weights=w)
  params = {"shared": jnp.zeros(3), "head": jnp.zeros(2)}
  state = tx.init(params)
  step = jax.jit(tx.update)
  want, q = gradnorm_reference(gs, losses, 1.5, 0.05, w, slice(3, 5))
  for g, loss, d_ref in zip(gs, losses, want):
    tree = {"shared": jnp.asarray(g[:, 3:]), "head": jnp.asarray(g[:, :3])}  # sorted: head first
    d, state = step(tree, state, params, losses=jnp.asarray(loss))
    np.testing.assert_allclose(np.concatenate([d["head"], d["shared"]]), d_ref, rtol=1e-12)
  np.testing.assert_allclose(state.weights, q, rtol=1e-12)


def test_gradnorm_errors_and_skipped_steps(x64):
  tx = cg.gradnorm(num_tasks=2)
  g = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  state = tx.init(jnp.zeros(2))
  with pytest.raises(ValueError, match="losses"):
    tx.update(g, state)
  with pytest.raises(ValueError, match="layer='nope' selects no parameter"):
    cg.gradnorm(layer="nope", num_tasks=2).update(g, state, losses=jnp.ones(2))
  d, new = tx.update(g, state, losses=jnp.array([1.0, -1.0]))
  assert np.all(np.isnan(np.asarray(d)))
  np.testing.assert_array_equal(new.count, state.count)
  with pytest.raises(ValueError, match="num_tasks"):
    cg.gradnorm()
  # Inside optax.chain the losses are passed on.
  import optax
  chained = optax.chain(cg.gradnorm(num_tasks=2), optax.sgd(1.0))
  out, _ = chained.update(g, chained.init(jnp.zeros(2)), losses=jnp.ones(2))
  np.testing.assert_allclose(out, [-1.0, -1.0])
