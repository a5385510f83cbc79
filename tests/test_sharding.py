"""SPMD: sharded params and stacked gradients (FSDP-style) on 8 simulated CPU devices."""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from came_grad_jax import came_grad

K = 3


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < 8:
    pytest.fail("the sharding tests need 8 devices: XLA_FLAGS is set in conftest.py")
  return jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))


def problem():
  rng = np.random.default_rng(0)
  params = {"big": rng.normal(size=(512, 64)).astype(np.float32),
            "bias": rng.normal(size=(64,)).astype(np.float32)}
  grads = {"big": rng.normal(size=(K, 512, 64)).astype(np.float32),
           "bias": rng.normal(size=(K, 64)).astype(np.float32)}
  return params, grads


def shard(mesh, params, grads):
  p_specs = {"big": P("x", None), "bias": P()}
  g_specs = {"big": P(None, "x", None), "bias": P()}
  put = lambda tree, specs: jax.tree.map(
      lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), tree, specs)
  return put(params, p_specs), put(grads, g_specs)


def same_sharding(a, b):
  return a.sharding.is_equivalent_to(b.sharding, a.ndim)


def test_sharded_update_matches_unsharded_and_keeps_sharding(mesh):
  params, grads = problem()
  tx = came_grad(task_weights=[1.0, 4.0, 1.0])
  want, _ = jax.jit(tx.update)(grads, tx.init(params))
  with jax.set_mesh(mesh):
    s_params, s_grads = shard(mesh, params, grads)
    state = jax.jit(tx.init)(s_params)
    update = jax.jit(tx.update)
    got, new_state = update(s_grads, state)
    lowered = update.lower(s_grads, state).compile().as_text()
  for name in params:
    err = np.linalg.norm(np.asarray(got[name]) - np.asarray(want[name]))
    assert err <= 1e-5 * np.linalg.norm(np.asarray(want[name]))
    assert same_sharding(got[name], s_params[name])
  assert "all-gather" not in lowered
  assert "all-reduce" in lowered
  assert all(jax.tree.leaves(jax.tree.map(same_sharding, new_state, state)))
  assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(lambda x: x.dtype, state)


@pytest.mark.slow
def test_chain_with_adamw_keeps_param_sharding(mesh):
  params, grads = problem()
  tx = optax.chain(came_grad(num_tasks=K), optax.adamw(1e-3))
  with jax.set_mesh(mesh):
    s_params, s_grads = shard(mesh, params, grads)
    state = tx.init(s_params)

    @jax.jit
    def step(p, s, g):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    new_params, _ = step(s_params, state, s_grads)
  for name in params:
    assert same_sharding(new_params[name], s_params[name])
