"""GradDrop: the sign-dropout rule against a float64 NumPy reference, and the transformation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import came_grad_jax as cg
from came_grad_jax.transforms._graddrop import drop_signs


def graddrop_reference(h: np.ndarray, uniform: np.ndarray, leak: float) -> np.ndarray:
  """Chen et al. 2020, eq. 1-2: purity ``P``, keep the positive values where ``P > U``."""
  total = np.abs(h).sum(0)
  purity = 0.5 * (1 + np.divide(h.sum(0), total, out=np.zeros_like(total), where=total > 0))
  keep = ((purity > uniform) & (h > 0)) | ((purity < uniform) & (h < 0))
  return ((leak + (1 - leak) * keep) * h).sum(0)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_matches_float64_reference(x64, jit, leak):
  rng = np.random.default_rng(0)
  h = rng.normal(size=(3, 7, 5)) * np.exp(3 * rng.normal(size=(3, 1, 1)))
  h[:, 0] = 0.0  # all-zero coordinates
  h[1, 1] = -h[0, 1]  # opposed coordinates
  uniform = rng.uniform(size=(7, 5))
  fn = jax.jit(drop_signs) if jit else drop_signs
  got = fn(jnp.asarray(h), jnp.asarray(uniform), leak)
  np.testing.assert_allclose(got, graddrop_reference(h, uniform, leak), rtol=1e-15, atol=0)


def test_same_signs_keep_everything_and_mixed_signs_keep_one():
  h = jnp.array([[1.0, 2.0, -1.0], [3.0, -2.0, -4.0]])
  out = drop_signs(h, jnp.array([0.99, 0.5, 0.01]))
  # column 0: P = 1 keeps both; column 1: P = 1/2 = U keeps neither; column 2: P = 0 keeps both.
  np.testing.assert_array_equal(out, [4.0, 0.0, -5.0])
  np.testing.assert_array_equal(drop_signs(h, jnp.full(3, 0.5), leak=1.0), h.sum(0))


def test_transformation_is_seeded_weighted_and_keeps_dtypes():
  grads = {"w": jnp.array([[1.0, -2.0, 0.5], [-1.0, 1.0, 0.5]], jnp.bfloat16),
           "b": jnp.array([[2.0], [-1.0]])}
  tx = cg.graddrop(key=1, task_weights=[1.0, 3.0])
  step = jax.jit(tx.update)
  out1, state1 = step(grads, tx.init(None))
  out2, _ = step(grads, tx.init(None))
  for a, b in zip(jax.tree.leaves(out1), jax.tree.leaves(out2)):
    np.testing.assert_array_equal(a, b)  # the same seed, the same update
  assert out1["w"].dtype == jnp.bfloat16 and out1["w"].shape == (3,)
  # Every output coordinate keeps one sign of the weighted values (-1 * 1 + 3 * 1 differ).
  for x, kept in zip(np.asarray(out1["w"], np.float32), ([1.0, -3.0], [-2.0, 3.0], [0.5, 1.5])):
    assert x in (kept[0], kept[1], sum(v for v in kept if v > 0), sum(v for v in kept if v < 0))
  assert not np.array_equal(jax.random.key_data(state1.key), jax.random.key_data(tx.init(None).key))


def test_expectation_matches_the_sign_purity(x64):
  """E[d] = P sum_{h_k > 0} h_k + (1 - P) sum_{h_k < 0} h_k, over many keys."""
  h = jnp.array([[2.0, -1.0], [-1.0, -1.0], [0.5, 3.0]])
  tx = cg.graddrop(key=0)
  run = jax.jit(jax.vmap(lambda key: tx.update(h, cg.GradDropState(key))[0]))
  mean = np.asarray(run(jax.random.split(jax.random.key(0), 20000))).mean(0)
  hn = np.asarray(h)
  purity = 0.5 * (1 + hn.sum(0) / np.abs(hn).sum(0))
  want = purity * np.where(hn > 0, hn, 0).sum(0) + (1 - purity) * np.where(hn < 0, hn, 0).sum(0)
  np.testing.assert_allclose(mean, want, atol=0.05)


def test_bad_input_is_rejected():
  with pytest.raises(ValueError, match="leak"):
    cg.graddrop(leak=1.5)
  tx = cg.graddrop(task_weights=[1.0, 2.0])
  with pytest.raises(ValueError, match="K = 2"):
    tx.update(jnp.ones((3, 4)), tx.init(None))


def test_chains_with_an_optimizer():
  tx = optax.chain(cg.graddrop(), optax.sgd(1.0))
  updates, _ = tx.update(jnp.ones((2, 3)), tx.init(jnp.zeros(3)))
  np.testing.assert_array_equal(updates, -2.0 * np.ones(3))  # equal signs: nothing dropped
