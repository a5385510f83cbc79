"""The memory-lean path (came_grad_jax._lean) and the fused Gram pass it relies on."""

import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import came_grad_jax
from came_grad_jax import weightings
from tests import mtl_checks

gram_module = importlib.import_module("came_grad_jax._gram")


def init_params(seed=0, d_in=4, d_hidden=8):
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32) * 0.5
  return {"enc": {"w": f(d_in, d_hidden), "b": f(d_hidden)},
          "heads": {"a": f(d_hidden), "c": f(d_hidden, 3), "s": f(d_hidden)}}


def make_batch(seed=1, n=16, d_in=4):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.standard_normal((n, d_in)), jnp.float32),
          jnp.asarray(rng.standard_normal(n), jnp.float32),
          jnp.asarray(rng.integers(0, 3, n)))


def encode(p, x, y, labels):
  del y, labels
  return jnp.tanh(x @ p["enc"]["w"] + p["enc"]["b"])


def heads(p, z, x, y, labels):
  del x
  regression = jnp.mean((z @ p["heads"]["a"] - y) ** 2)
  logits = z @ p["heads"]["c"]
  classification = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
  sparsity = jnp.mean((z * p["heads"]["s"]) ** 2) - 0.3 * jnp.mean(z)
  return jnp.stack([regression, classification, sparsity])


def losses_fn(p, *batch):
  return heads(p, encode(p, *batch), *batch)


def rel_err(got, want):
  got, want = jax.tree.leaves(got), jax.tree.leaves(want)
  num = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
            for a, b in zip(got, want))
  den = sum(float(np.sum(np.asarray(b, np.float64) ** 2)) for b in want)
  return np.sqrt(num / max(den, 1e-300))


def full_path(params, batch, task_weights):
  losses, stacked = came_grad_jax.value_and_task_grads(losses_fn)(params, *batch)
  tx = came_grad_jax.came_grad(task_weights=task_weights)
  update, state = tx.update(stacked, tx.init(params))
  return losses, update, state.diagnostics.coefficients


class LeanTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_exact_lean_matches_full_path(self):
    params, batch = init_params(), make_batch()
    weights = jnp.array([1.0, 4.0, 0.5])
    losses_ref, update_ref, coeffs_ref = full_path(params, batch, weights)
    for chunks in (1, 2, 5):
      step = self.variant(came_grad_jax.lean_value_and_grad(
          losses_fn, weightings.came(0.5, 1.5, 0.2), task_weights=weights, num_chunks=chunks))
      losses, grads, info = step(params, *batch)
      chex.assert_trees_all_close(losses, losses_ref, rtol=1e-6)
      chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)
      assert rel_err(grads, update_ref) <= 1e-5, chunks
      mtl_checks.assert_close_to_norm(info.coefficients, coeffs_ref, 1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_representation_gram_and_update(self):
    params, batch = init_params(), make_batch()
    weights = np.array([2.0, 1.0, 3.0])
    weighting = weightings.came(0.5, 1.5, 0.2)
    step = self.variant(came_grad_jax.representation_value_and_grad(
        encode, heads, weighting, task_weights=weights))
    losses, grads, info = step(params, *batch)

    # Reference: the K gradients w.r.t. z, by jacrev, Gram in float64.
    z = encode(params, *batch)
    jac = jax.jacrev(lambda rep: heads(params, rep, *batch))(z)
    h = np.asarray(jac, np.float64).reshape(3, -1) * weights[:, None]
    mtl_checks.assert_close_to_norm(info.gram, h @ h.T, 1e-5)
    coeffs = np.asarray(weighting(jnp.asarray(h @ h.T, jnp.float32)))
    mtl_checks.assert_close_to_norm(info.coefficients, coeffs, 1e-4)

    # The update is exactly grad sum_k stop_gradient(c_k) w_k L_k.
    cw = jnp.asarray(info.coefficients * weights, jnp.float32)
    want = jax.grad(lambda p: jnp.dot(jax.lax.stop_gradient(cw), losses_fn(p, *batch)))(params)
    assert rel_err(grads, want) <= 1e-5
    chex.assert_trees_all_close(losses, losses_fn(params, *batch), rtol=1e-6)

  @pytest.mark.slow
  def test_representation_is_exact_when_the_representation_is_the_parameters(self):
    # encode returns the shared parameters themselves and heads have no parameters
    # of their own: then dL/dz is dL/dtheta and the approximation is exact.
    params = {"shared": jnp.asarray(np.random.default_rng(3).standard_normal(6), jnp.float32)}
    targets = jnp.asarray(np.random.default_rng(4).standard_normal((3, 6)), jnp.float32)
    enc = lambda p: p["shared"]
    hd = lambda p, z: jnp.sum((z[None, :] - targets) ** 2, axis=1) * jnp.array([1.0, 0.3, 2.0])
    full = lambda p: hd(p, enc(p))
    _, stacked = came_grad_jax.value_and_task_grads(full)(params)
    tx = came_grad_jax.came_grad(num_tasks=3)
    want, _ = tx.update(stacked, tx.init(params))
    _, got, _ = jax.jit(came_grad_jax.representation_value_and_grad(enc, hd))(params)
    assert rel_err(got, want) <= 1e-5

  @pytest.mark.slow
  def test_representation_with_a_tuple_of_losses(self):
    params, batch = init_params(), make_batch()
    as_tuple = lambda p, z, *b: tuple(heads(p, z, *b))
    want = came_grad_jax.representation_value_and_grad(encode, heads)(params, *batch)
    got = jax.jit(came_grad_jax.representation_value_and_grad(encode, as_tuple))(params, *batch)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)

  @pytest.mark.slow
  def test_has_aux(self):
    params, batch = init_params(), make_batch()
    fun = lambda p, *b: (losses_fn(p, *b), {"n": jnp.sum(b[1])})
    (losses, aux), grads, _ = jax.jit(came_grad_jax.lean_value_and_grad(
        fun, has_aux=True, num_chunks=2))(params, *batch)
    assert losses.shape == (3,) and "n" in aux
    hd = lambda p, z, *b: (heads(p, z, *b), jnp.float32(1.0))
    (losses, aux), grads, _ = came_grad_jax.representation_value_and_grad(
        encode, hd, has_aux=True)(params, *batch)
    assert losses.shape == (3,) and float(aux) == 1.0

  @pytest.mark.slow
  def test_zero_and_opposed_gradients_are_finite(self):
    params = {"w": jnp.ones(4)}
    opposed = lambda p: jnp.stack([jnp.sum(p["w"]), -jnp.sum(p["w"])])
    zero = lambda p: jnp.stack([0.0 * jnp.sum(p["w"]), 0.0 * jnp.sum(p["w"])])
    for fun in (opposed, zero):
      _, grads, info = jax.jit(came_grad_jax.lean_value_and_grad(fun))(params)
      assert np.all(np.isfinite(grads["w"])) and np.all(np.isfinite(info.coefficients))

  def test_bad_input(self):
    params, batch = init_params(), make_batch()
    with pytest.raises(ValueError, match="num_chunks"):
      came_grad_jax.lean_value_and_grad(losses_fn, num_chunks=0)
    with pytest.raises(TypeError, match="weighting"):
      came_grad_jax.lean_value_and_grad(losses_fn, weighting=3)
    with pytest.raises(TypeError, match="weighting"):
      came_grad_jax.representation_value_and_grad(encode, heads, weighting="came")
    with pytest.raises(ValueError, match="task_weights"):
      came_grad_jax.lean_value_and_grad(losses_fn, task_weights=[1.0, 2.0])(params, *batch)
    with pytest.raises(ValueError, match="vector of K losses"):
      came_grad_jax.lean_value_and_grad(lambda p, *b: jnp.sum(losses_fn(p, *b)))(params, *batch)

  @pytest.mark.slow
  def test_chunks_reduce_compiled_temporary_memory(self):
    # Many large leaves: K x P task gradients dominate; computing them in 4
    # chunks must need less temporary memory than all at once (compiled
    # memory analysis: deterministic for a given XLA, no timing involved).
    rng = np.random.default_rng(0)
    params = {f"w{i}": jnp.asarray(rng.standard_normal((256, 256)) / 16, jnp.float32)
              for i in range(8)}
    x = jnp.asarray(rng.standard_normal((4, 256)), jnp.float32)

    def fun(p, x):
      h = x
      for i in range(8):
        h = jnp.tanh(h @ p[f"w{i}"])
      return jnp.stack([jnp.mean(h ** 2), jnp.mean(h), jnp.mean(jnp.abs(h)), jnp.mean(h[:, :8])])

    def temp_bytes(chunks):
      step = jax.jit(came_grad_jax.lean_value_and_grad(fun, num_chunks=chunks))
      analysis = step.lower(params, x).compile().memory_analysis()
      assert analysis is not None, "the CPU backend provides a compiled memory analysis"
      return analysis.temp_size_in_bytes

    assert temp_bytes(4) < temp_bytes(1)


# --- The fused Gram pass (came_grad_jax._gram internals) ---------------------------------

LAYOUT_SHAPES = [(3, 5), (2, 1000), (4, 100000), (8, 23757), (5, 64, 64), (3, 5000, 64),
                 (2, 3, 3, 16, 32), (1, 77), (3, 4097), (6, 300, 3)]


@pytest.mark.parametrize("shape", LAYOUT_SHAPES)
def test_fused_gram_matches_float64(shape):
  x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  flat = x.reshape(shape[0], -1).astype(np.float64)
  want = flat @ flat.T
  got = np.asarray(jax.jit(came_grad_jax.gram)({"x": x}))
  assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))
  layout = gram_module._row_layout(shape, (True,) * len(shape))
  if layout is not None:  # the fused pass itself, not the dot fallback
    fused = np.asarray(jax.jit(lambda a: gram_module._pairwise_gram(a, layout))(x))
    assert np.max(np.abs(fused - want)) <= 1e-5 * np.max(np.abs(want))


def test_fused_gram_bf16_accumulates_in_float32():
  x = np.random.default_rng(1).standard_normal((3, 2048)).astype(np.float32)
  xb = jnp.asarray(x, jnp.bfloat16)
  got = came_grad_jax.gram(xb)
  assert got.dtype == jnp.float32
  exact = np.asarray(xb, np.float64) @ np.asarray(xb, np.float64).T
  assert np.max(np.abs(np.asarray(got) - exact)) <= 1e-5 * np.max(np.abs(exact))


def test_fused_gram_float64(x64):
  x = np.random.default_rng(2).standard_normal((4, 30000))
  got = came_grad_jax.gram(jnp.asarray(x))
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, x @ x.T, rtol=1e-12)


def test_row_layout_respects_sharded_axes():
  whole = lambda *flags: (True,) + flags
  # A sharded last axis cannot be part of a row: fall back to the dot.
  assert gram_module._row_layout((3, 64, 4096), whole(True, False)) is None
  # Rows stop at a sharded middle axis.
  assert gram_module._row_layout((3, 8000, 64), whole(False, True)) == ((3, 8000, 64), (2,))
  # Only whole axes are split.
  shape, axes = gram_module._row_layout((3, 8000, 64), whole(True, True))
  assert shape[1] * shape[2] == 8000 and axes == (2, 3)


@pytest.mark.parametrize("shape,spec", [
    ((3, 8 * 1000), (None, "d")),
    ((4, 1024, 512), (None, "d", None)),
    ((4, 64, 4096), (None, None, "d")),
    ((3, 8000, 64), (None, "d", None)),
    ((2, 10000), (None, "d")),
])
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_sharded_gram_has_no_all_gather(shape, spec, axis_type):
  if jax.device_count() < 8:
    pytest.skip("needs 8 (simulated) devices")
  mesh = jax.make_mesh((8,), ("d",), axis_types=(axis_type,))
  x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  xs = jax.device_put(x, NamedSharding(mesh, PartitionSpec(*spec)))
  fn = jax.jit(lambda t: came_grad_jax.gram({"x": t}))
  hlo = fn.lower(xs).compile().as_text()
  assert "all-gather" not in hlo
  flat = x.reshape(shape[0], -1).astype(np.float64)
  want = flat @ flat.T
  assert np.max(np.abs(np.asarray(fn(xs)) - want)) <= 1e-5 * np.max(np.abs(want))
