"""Gram matrix, combination and validation of stacked task gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import combine, gram, num_tasks_of
from came_grad_jax._gram import weighted_sum


def stacked(k=3, seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return {"dense": {"w": rng.normal(size=(k, 4, 5)).astype(dtype), "b": rng.normal(size=(k, 5)).astype(dtype)},
          "head": rng.normal(size=(k, 2, 3, 2)).astype(dtype)}


def flat(tree):
  return np.concatenate([np.asarray(x, np.float64).reshape(x.shape[0], -1)
                         for x in jax.tree.leaves(tree)], axis=1)


@pytest.mark.parametrize("jit", [False, True])
def test_gram_matches_numpy(x64, jit):
  g = stacked(dtype=np.float64)
  w = np.array([1.0, 4.0, 0.5])
  fn = jax.jit(gram) if jit else gram
  h = flat(g) * w[:, None]
  np.testing.assert_allclose(fn(g, w), h @ h.T, rtol=1e-13)
  np.testing.assert_allclose(fn(g), flat(g) @ flat(g).T, rtol=1e-13)


@pytest.mark.parametrize("k", [2, 8, 9])  # 9: above the fused pass, the dot for every leaf
def test_gram_of_many_small_and_a_large_leaf(x64, k):
  # Small leaves share one Gram pass (merged, zero-padded); the large one has its own.
  rng = np.random.default_rng(k)
  g = {"bias": [rng.normal(size=(k, n)) for n in (1, 7, 40, 300)],
       "ln": rng.normal(size=(k, 3, 5)),
       "big": rng.normal(size=(k, 300, 64))}
  np.testing.assert_allclose(jax.jit(gram)(g), flat(g) @ flat(g).T, rtol=1e-12)
  # A single small leaf keeps its own pass.
  np.testing.assert_allclose(gram(g["ln"]), flat(g["ln"]) @ flat(g["ln"]).T, rtol=1e-12)


def test_combine_matches_numpy_and_keeps_structure(x64):
  g = stacked(dtype=np.float64)
  c = np.array([0.3, -1.0, 2.0])
  out = combine(g, jnp.asarray(c))
  assert jax.tree.structure(out) == jax.tree.structure(g)
  for leaf, src in zip(jax.tree.leaves(out), jax.tree.leaves(g)):
    assert leaf.shape == src.shape[1:]
    np.testing.assert_allclose(leaf, np.tensordot(c, src, axes=1), rtol=1e-13)


def test_weighted_sum_of_separate_trees_equals_combine(x64):
  g = stacked(dtype=np.float64)
  c = jnp.asarray([0.3, -1.0, 2.0])
  trees = [jax.tree.map(lambda x, k=k: x[k], g) for k in range(3)]
  chex.assert_trees_all_close(weighted_sum(trees, c), combine(g, c), rtol=1e-14)
  bf16 = [jax.tree.map(lambda x: x.astype(jnp.bfloat16), t) for t in trees]
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(weighted_sum(bf16, c)))


def test_bf16_gram_accumulates_in_float32_and_update_stays_bf16():
  g = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), stacked())
  m = gram(g)
  assert m.dtype == jnp.float32
  exact = flat(jax.tree.map(lambda x: np.asarray(x.astype(jnp.float32)), g))
  np.testing.assert_allclose(m, exact @ exact.T, rtol=1e-5)
  out = combine(g, jnp.ones(3))
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(out))


def test_num_tasks_and_errors():
  assert num_tasks_of(stacked(k=4)) == 4
  with pytest.raises(ValueError, match="share the leading task axis"):
    num_tasks_of({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))})
  with pytest.raises(ValueError, match=r"updates\['a'\] is a scalar"):
    num_tasks_of({"a": np.float32(1.0)})
  with pytest.raises(TypeError, match="must be floating point"):
    num_tasks_of({"a": np.zeros((2, 3), np.int32)})
  with pytest.raises(ValueError, match="no array leaves"):
    num_tasks_of({})
