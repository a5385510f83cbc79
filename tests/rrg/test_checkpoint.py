"""Resuming from an Orbax checkpoint continues the run exactly."""

import jax
import numpy as np
from flax import nnx

from examples.rrg import checkpoint, configs, main, train

SMOKE = configs.smoke()  # its shapes and optimizer: compilations shared with the other tests


def _params(model):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_restore_gives_the_same_next_step(tmp_path):
  data, tokenizer = main.load_data(SMOKE)
  split, seed = data["train"], 5
  step_fn = train.make_train_step(SMOKE.tasks, temperature=SMOKE.temperature)

  # Uninterrupted run: 3 steps, checkpoint, 1 more step.
  model = train.create_model(SMOKE, tokenizer, split, seed)
  optimizer = train.create_optimizer(SMOKE, model, "came")
  mgr = checkpoint.manager(str(tmp_path / "ckpt"))
  assert checkpoint.restore(mgr, model, optimizer) is None  # nothing saved yet
  stream = train.batch_stream(split, SMOKE.batch_size, seed)  # 24 examples: 3 steps per epoch
  for _ in range(3):
    step_fn(model, optimizer, next(stream))
  checkpoint.save(mgr, 3, model, optimizer, data_seed=seed, extra={"history": [[1.5, 2.0]]})
  mgr.wait_until_finished()
  next_batch = next(stream)  # the first batch of epoch 1
  expected_metrics = jax.device_get(step_fn(model, optimizer, next_batch))
  expected = _params(model)

  # Resumed run: a model with another initialisation, restored, and the data stream resumed
  # from (data_seed, step) alone.
  fresh = train.create_model(SMOKE, tokenizer, split, seed + 1)
  fresh_opt = train.create_optimizer(SMOKE, fresh, "came")
  before = _params(fresh)
  meta = checkpoint.restore(checkpoint.manager(str(tmp_path / "ckpt")), fresh, fresh_opt)
  assert meta == {"step": 3, "data_seed": seed, "history": [[1.5, 2.0]]}
  assert int(fresh_opt.step[...]) == 3
  resumed = next(train.batch_stream(split, SMOKE.batch_size, meta["data_seed"], meta["step"]))
  jax.tree.map(np.testing.assert_array_equal, resumed, next_batch)
  metrics = jax.device_get(step_fn(fresh, fresh_opt, resumed))
  got = _params(fresh)

  assert any(jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b), before, got)))
  jax.tree.map(np.testing.assert_array_equal, got, expected)
  jax.tree.map(np.testing.assert_array_equal, metrics, expected_metrics)
  # The CAME-Grad state (its step count) came back too: 3 restored + 1.
  opt_state = nnx.to_pure_dict(nnx.state(fresh_opt))["opt_state"]
  assert int(np.asarray(opt_state[0]["count"])) == 4


def test_stream_resumes_mid_epoch():
  data, _ = main.load_data(SMOKE)
  split = data["train"]
  stream = train.batch_stream(split, SMOKE.batch_size, seed=1)
  uninterrupted = [next(stream)["tokens"] for _ in range(7)]
  for start in (2, 4):
    resumed = train.batch_stream(split, SMOKE.batch_size, seed=1, start_step=start)
    for expected in uninterrupted[start:]:
      np.testing.assert_array_equal(next(resumed)["tokens"], expected)
  assert not np.array_equal(uninterrupted[0], uninterrupted[3])  # epochs are reshuffled
