"""Checkpoints: resuming continues the run exactly (model, CAME-Grad state, data position), and a
different config is refused."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import came_grad_jax as cg
from examples.rrg.data.input_pipeline import synthetic_dataset, train_iterator
from examples.rrg.training import checkpoint


@dataclasses.dataclass(frozen=True)
class _Model:
  width: int = 8


@dataclasses.dataclass(frozen=True)
class _Config:
  """A stand-in for ``configs.Config``: frozen, nested, with tuples."""

  tasks: tuple[str, ...] = ("a", "b")
  num_steps: int = 200
  learning_rate: float = 1e-2
  seeds: tuple[int, ...] = (0,)
  model: _Model = _Model()


class _TwoTaskNet(nnx.Module):
  """Images -> hidden -> (token-0 regression, label regression): two task losses."""

  def __init__(self, pixels: int, width: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(pixels, width, rngs=rngs)
    self.head_a = nnx.Linear(width, 1, rngs=rngs)
    self.head_b = nnx.Linear(width, 14, rngs=rngs)

  def losses(self, batch):
    h = jnp.tanh(self.hidden(batch["images"].reshape(batch["images"].shape[0], -1)))
    target_a = batch["tokens"][:, 1:2].astype(jnp.float32) / 10.0
    target_b = batch["labels"].astype(jnp.float32)
    return (jnp.mean((self.head_a(h) - target_a) ** 2), jnp.mean((self.head_b(h) - target_b) ** 2))


@nnx.jit
def _step(model, optimizer, batch):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  losses, grads = cg.value_and_task_grads(
      lambda p: nnx.merge(graphdef, p, rest).losses(batch))(params)
  optimizer.update(model, grads)
  return losses


# One transformation object for every optimizer: nnx.jit keys its cache on it (one compilation).
_TX = optax.chain(cg.came_grad(task_weights=jnp.array([1.0, 4.0])), optax.adamw(1e-2))


def _setup(split, init_seed):
  model = _TwoTaskNet(int(np.prod(split.images.shape[1:])), 8, rngs=nnx.Rngs(init_seed))
  return model, nnx.Optimizer(model, _TX, wrt=nnx.Param)


def _params(model):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def split():
  return synthetic_dataset(24, 4, 4, image_size=8, max_len=16)[0]["train"]


@pytest.mark.slow
def test_restore_continues_the_run_exactly(tmp_path, split):
  config, seed = _Config(), 5
  model, optimizer = _setup(split, 0)
  stream = train_iterator(split, 8, seed)  # 3 steps per epoch
  mgr = checkpoint.manager(str(tmp_path / "ckpt"))
  assert checkpoint.restore(mgr, model, optimizer, config=config, data_iterator=stream) is None
  for _ in range(4):
    _step(model, optimizer, next(stream))
  checkpoint.save(mgr, 4, model, optimizer, data_seed=seed, config=config,
                  data_iterator=stream, extra={"history": [[1.5, 2.0]]})
  next_batch = next(stream)  # taken right away: the saved position must not move with it
  mgr.wait_until_finished()
  expected_losses = np.asarray(_step(model, optimizer, next_batch))
  expected = _params(model)

  # A model with another initialisation, restored, and a fresh iterator set to the saved place.
  fresh, fresh_opt = _setup(split, 1)
  fresh_stream = train_iterator(split, 8, seed)
  before = _params(fresh)
  meta = checkpoint.restore(checkpoint.manager(str(tmp_path / "ckpt")), fresh, fresh_opt,
                            config=config, data_iterator=fresh_stream)
  assert meta["step"] == 4 and meta["data_seed"] == seed and meta["history"] == [[1.5, 2.0]]
  assert meta["config"]["model"] == {"width": 8} and meta["config"]["tasks"] == ["a", "b"]
  assert meta["config_fingerprint"] == checkpoint.config_fingerprint(config)
  resumed = next(fresh_stream)
  jax.tree.map(np.testing.assert_array_equal, resumed, next_batch)
  losses = np.asarray(_step(fresh, fresh_opt, resumed))
  assert not _same(before, _params(fresh))
  assert _same(_params(fresh), expected)
  np.testing.assert_array_equal(losses, expected_losses)
  # The CAME-Grad state (its step count) came back too: 4 restored + 1.
  opt_state = nnx.to_pure_dict(nnx.state(fresh_opt))["opt_state"]
  assert int(np.asarray(opt_state[0]["count"])) == 5


def test_changed_config_is_refused_naming_path_and_fields(tmp_path, split):
  model, optimizer = _setup(split, 0)
  mgr = checkpoint.manager(str(tmp_path / "run"))
  checkpoint.save(mgr, 7, model, optimizer, data_seed=0, config=_Config())
  mgr.wait_until_finished()
  path = str(tmp_path / "run" / "7")
  changed = _Config(num_steps=100, model=_Model(width=16))
  with pytest.raises(ValueError) as error:
    checkpoint.restore(mgr, model, optimizer, config=changed)
  message = str(error.value)
  assert path in message
  assert "num_steps: 200 in the checkpoint, 100 now" in message
  assert "model.width: 8 in the checkpoint, 16 now" in message
  assert "learning_rate" not in message and "tasks" not in message
  with pytest.raises(ValueError, match=r"tasks: \['a', 'b'\] in the checkpoint, \['a'\] now"):
    checkpoint.restore(mgr, model, optimizer, config=_Config(tasks=("a",)))
  # Bookkeeping fields (here: seeds) may differ; so may fields the caller ignores.
  assert checkpoint.restore(mgr, model, optimizer, config=_Config(seeds=(0, 1)))["step"] == 7
  assert checkpoint.restore(mgr, model, optimizer, config=changed,
                            ignore={"num_steps", "model"})["step"] == 7
  # Without a config, nothing is checked.
  assert checkpoint.restore(mgr, model, optimizer)["step"] == 7


def test_checkpoint_without_config_or_iterator_state(tmp_path, split):
  model, optimizer = _setup(split, 0)
  mgr = checkpoint.manager(str(tmp_path / "old"))
  checkpoint.save(mgr, 3, model, optimizer, data_seed=0)
  mgr.wait_until_finished()
  with pytest.raises(ValueError, match=r"old.3 records no config"):
    checkpoint.restore(mgr, model, optimizer, config=_Config())
  with pytest.raises(ValueError, match=r"old.3 holds no data-iterator state"):
    checkpoint.restore(mgr, model, optimizer, data_iterator=train_iterator(split, 8, 0))


class _ForeignIterator:
  """Saved through Grain's handler like a DataLoader iterator, with a state of its own."""

  def get_state(self):
    return b'{"position": 3}'


def test_iterator_state_of_another_pipeline_is_refused(tmp_path, split):
  model, optimizer = _setup(split, 0)
  mgr = checkpoint.manager(str(tmp_path / "other"))
  checkpoint.save(mgr, 2, model, optimizer, data_seed=0, data_iterator=_ForeignIterator())
  mgr.wait_until_finished()
  with pytest.raises(ValueError, match=r"other.2: its data-iterator state does not fit"):
    checkpoint.restore(mgr, model, optimizer, data_iterator=train_iterator(split, 8, 0))


def test_config_fingerprint():
  assert checkpoint.config_fingerprint(_Config()) == checkpoint.config_fingerprint(_Config())
  assert checkpoint.config_fingerprint(_Config()) != checkpoint.config_fingerprint(
      _Config(learning_rate=2e-2))
  assert checkpoint.config_differences(checkpoint.config_record(_Config()),
                                       _Config(seeds=(3,)), ignore=()) == {
                                           "seeds": ([0], [3])}
  with pytest.raises(TypeError, match="config must be a dataclass"):
    checkpoint.config_fingerprint({"num_steps": 1})


@pytest.mark.slow
def test_a_rerun_says_which_run_resumed_from_which_step(tmp_path, capsys):
  from examples.rrg import configs  # pylint: disable=import-outside-toplevel
  from examples.rrg.training import train  # pylint: disable=import-outside-toplevel

  config = dataclasses.replace(configs.smoke(), tasks=("nll", "cls"), task_weights=(1.0, 4.0),
                               method="ls", num_steps=4, eval_every=2, checkpoint_every=2)
  data = train.load_data(config)
  first = train.train_and_evaluate(config, str(tmp_path), data=data, progress=False)
  assert first.resumed_from is None
  again = train.train_and_evaluate(config, str(tmp_path), data=data, progress=False)
  assert again.resumed_from == 4 and again.selected_step == first.selected_step
  assert "ls_seed0: resumed from its checkpoint at step 4" in capsys.readouterr().out
  with open(tmp_path / "ls_seed0" / "metrics.json", encoding="utf-8") as f:
    assert '"resumed_from": 4' in f.read()
