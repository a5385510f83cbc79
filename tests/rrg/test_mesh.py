"""Mesh training of the RRG example on 8 simulated CPU devices (conftest.py sets XLA_FLAGS).

LS and CAME-Grad over 20 steps on a (data=2, fsdp=4) mesh give the losses and parameters of the
one-device run, and the updated parameters and optimizer state keep their shardings.
"""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from examples.rrg.data import input_pipeline
from examples.rrg.training import sharding
from tests.rrg import mesh_run


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < 8:
    pytest.fail("the mesh tests need 8 devices: XLA_FLAGS is set in tests/conftest.py")
  return sharding.make_mesh("data=2,fsdp=4")


# -- the mesh and the parameter split -----------------------------------------------------------
def test_parse_mesh_defaults_and_errors():
  assert sharding.parse_mesh("data=2,fsdp=4") == {"data": 2, "fsdp": 4}
  assert sharding.parse_mesh(" fsdp = 8 ") == {"data": 1, "fsdp": 8}
  for bad in ("data=2,model=4", "data", "data=0", "data=x", "data=2,data=2", ""):
    with pytest.raises(ValueError, match="mesh"):
      sharding.parse_mesh(bad)


def test_make_mesh_needs_the_right_number_of_devices():
  with pytest.raises(ValueError, match="needs 6 devices"):
    sharding.make_mesh("data=2,fsdp=3")
  mesh = sharding.make_mesh("fsdp=8")
  assert dict(mesh.shape) == {"data": 1, "fsdp": 8}


def test_param_spec_shards_the_largest_divisible_dimension():
  assert sharding.param_spec((3, 3, 16, 64), 4) == (None, None, None, "fsdp")
  assert sharding.param_spec((256, 6), 4) == ("fsdp", None)
  assert sharding.param_spec((6, 10), 4) == (None, None)  # nothing divisible: replicated
  assert sharding.param_spec((16, 16), 4) == (None, None)  # below min_size: replicated
  assert sharding.param_spec((16, 16), 4, min_size=64) == ("fsdp", None)
  assert sharding.param_spec((64, 64), 1) == (None, None)


def test_process_rows_single_process_and_indivisible_batch(mesh):
  assert sharding.process_rows(mesh, 16) == slice(0, 16)
  with pytest.raises(ValueError, match="divisible by data x fsdp = 8"):
    sharding.process_rows(mesh, 12)


def test_local_batches_are_the_train_iterators_batches_sharded(mesh):
  split = mesh_run.data()[0]["train"]
  want = input_pipeline.train_iterator(split, 8, seed=3, start_step=2)
  got = sharding.local_batches(split, 8, 3, mesh, start_step=2)
  for _ in range(5):  # 32 studies, 8 a batch: crosses an epoch boundary
    w, g = next(want), next(got)
    assert set(w) == set(g)
    for key in w:
      assert g[key].sharding.is_equivalent_to(NamedSharding(mesh, P(("data", "fsdp"))),
                                              g[key].ndim)
      np.testing.assert_array_equal(np.asarray(g[key]), w[key])


# -- 20 steps: one device vs the mesh -------------------------------------------------------------
def _same_shardings(node, mesh):
  want = sharding.state_shardings(node, mesh)
  kept = jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim), nnx.state(node), want)
  return all(jax.tree.leaves(kept))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ls", "came"])
def test_mesh_training_matches_one_device_and_keeps_shardings(mesh, method):
  losses_1, params_1 = mesh_run.reference(method)
  losses_8, model_8, optimizer_8 = mesh_run.run(method, mesh)
  # The same losses at every step and the same parameters after 20 steps, up to float32
  # reduction order (relative to the norms; attention key biases excepted, see is_key_bias).
  assert np.linalg.norm(losses_8 - losses_1) <= 1e-5 * np.linalg.norm(losses_1)
  params_8 = mesh_run.params_of(model_8)
  assert mesh_run.rel_err(params_8, params_1) <= 1e-5
  assert any(mesh_run.is_key_bias(name) for name in params_1)
  # Parameters and AdamW moments are split over fsdp, and stay as they were placed.
  assert _same_shardings(model_8, mesh) and _same_shardings(optimizer_8, mesh)
  params = jax.tree.leaves(nnx.state(model_8, nnx.Param))
  for x in params:  # as param_spec says: the tiny model's biases and norms stay replicated
    want = P(*sharding.param_spec(x.shape, 4, min_size=mesh_run.MIN_SIZE))
    assert x.sharding.is_equivalent_to(NamedSharding(mesh, want), x.ndim)
  specs = [x.sharding.spec for x in params]
  assert sum("fsdp" in spec for spec in specs) >= 10
  moments = [x.sharding.spec for x in jax.tree.leaves(nnx.state(optimizer_8))]
  assert sum("fsdp" in spec for spec in moments) >= 2 * sum("fsdp" in spec for spec in specs)
