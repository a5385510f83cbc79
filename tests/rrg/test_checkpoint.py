"""Resuming from an Orbax checkpoint continues the run exactly."""

import jax
import numpy as np
from flax import nnx

from examples.rrg import checkpoint, train
from examples.rrg.models import ModelConfig, ReportGenerator

CFG = ModelConfig(vocab_size=24, max_len=10, image_size=16, channels=(4, 8), d_model=16,
                  num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)


def _batch(step, batch_size=6):
  """A deterministic batch per step: the role of the (data_seed, step) stream."""
  rng = np.random.default_rng([7, step])
  tokens = rng.integers(4, CFG.vocab_size, size=(batch_size, CFG.max_len))
  tokens[:, 0], tokens[:, -1] = 1, 2
  return {"images": rng.uniform(size=(batch_size, 1, 16, 16, 1)).astype(np.float32),
          "tokens": tokens.astype(np.int32),
          "labels": rng.integers(0, 4, size=(batch_size, 14)).astype(np.int32)}


def _params(model):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_restore_gives_the_same_next_step(tmp_path):
  tx = train.make_optimizer("came", (1.0, 4.0, 1.0), learning_rate=1e-2, weight_decay=1e-4,
                            num_steps=10, warmup_steps=2)
  step_fn = train.make_train_step()

  model = ReportGenerator(CFG, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  mgr = checkpoint.manager(str(tmp_path / "ckpt"))
  assert checkpoint.restore(mgr, model, optimizer) is None  # nothing saved yet
  for step in range(3):
    step_fn(model, optimizer, _batch(step))
  checkpoint.save(mgr, 3, model, optimizer, data_seed=7)
  mgr.wait_until_finished()
  expected_metrics = step_fn(model, optimizer, _batch(3))
  expected = _params(model)

  # A fresh model with another initialisation: restoring must overwrite everything.
  fresh = ReportGenerator(CFG, rngs=nnx.Rngs(1))
  fresh_opt = nnx.Optimizer(fresh, tx, wrt=nnx.Param)
  before = _params(fresh)
  meta = checkpoint.restore(checkpoint.manager(str(tmp_path / "ckpt")), fresh, fresh_opt)
  assert meta == {"step": 3, "data_seed": 7}
  assert int(fresh_opt.step[...]) == 3
  metrics = step_fn(fresh, fresh_opt, _batch(meta["step"]))
  got = _params(fresh)

  differs = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b), before, got))
  assert any(differs)
  jax.tree.map(np.testing.assert_array_equal, got, expected)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(metrics),
               jax.device_get(expected_metrics))
  # The CAME-Grad state (step count, last diagnostics) came back too.
  assert int(np.asarray(nnx.to_pure_dict(nnx.state(fresh_opt))["opt_state"][0]["count"])) == 4
