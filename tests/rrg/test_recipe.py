"""The paper's trainer recipe (``--recipe paper``): weight-decay mask, LS clipping, schedule."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from examples.rrg import configs
from examples.rrg.training import train

PAPER = dataclasses.replace(configs.smoke(), recipe="paper", learning_rate=5e-5, num_steps=100,
                            warmup_fraction=0.1)


def test_schedule_warms_up_from_one_percent_and_decays_to_a_tenth_of_the_peak():
  schedule = train.learning_rate(PAPER)
  np.testing.assert_allclose(schedule(0), 5e-7, rtol=1e-5)  # the paper's warmup_lr
  np.testing.assert_allclose(schedule(PAPER.warmup_steps), 5e-5, rtol=1e-5)
  np.testing.assert_allclose(schedule(PAPER.num_steps), 5e-6, rtol=1e-5)  # its min_lr
  assert schedule(5) < schedule(9) and schedule(50) > schedule(90)
  # The default recipe warms up from zero.
  assert float(train.learning_rate(dataclasses.replace(PAPER, recipe="default"))(0)) == 0.0


def test_weight_decay_reaches_only_parameters_of_ndim_two_or_more():
  params = {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,)), "scale": jnp.ones((4,)),
            "embed": jnp.ones((5, 2, 2))}
  assert train.decay_mask(params) == {"kernel": True, "bias": False, "scale": False,
                                      "embed": True}
  # With zero gradients, AdamW's step is the decay alone: 1-D parameters do not move.
  tx = train.base_optimizer(PAPER, "came")
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, state, params)
  for name in ("bias", "scale"):
    np.testing.assert_array_equal(updates[name], 0.0)
  lr0 = float(train.learning_rate(PAPER)(0))
  for name in ("kernel", "embed"):
    np.testing.assert_allclose(updates[name], -lr0 * 0.05, rtol=1e-5)


@pytest.mark.slow
def test_the_models_biases_and_norms_are_not_decayed_under_nnx_optimizer():
  model = train.create_model(PAPER, _Tokenizer(), _split(), 0)
  before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  optimizer = nnx.Optimizer(model, train.base_optimizer(PAPER, "came"), wrt=nnx.Param)
  optimizer.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
  after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  shrink = 1.0 - float(train.learning_rate(PAPER)(0)) * train.PAPER_WEIGHT_DECAY
  kinds = set()
  for (path, a), (_, b) in zip(jax.tree_util.tree_flatten_with_path(before)[0],
                               jax.tree_util.tree_flatten_with_path(after)[0]):
    name = jax.tree_util.keystr(path)
    if np.ndim(a) >= 2 and "bias" not in name:
      kinds.add("decayed")
      np.testing.assert_allclose(b, a * shrink, rtol=1e-6, err_msg=name)
    else:
      kinds.add("2-D bias" if np.ndim(a) >= 2 else "1-D")
      np.testing.assert_array_equal(b, a, err_msg=name)  # biases, norm scales: no decay
  assert {"decayed", "1-D"} <= kinds


def _two_updates(tx, grads):
  params = {"w": jnp.zeros((2, 2))}
  state = tx.init(params)
  out = []
  for g in grads:
    u, state = tx.update(g, state, params)
    out.append(u["w"])
  return out


@pytest.mark.slow
def test_the_ls_path_is_clipped_by_value_and_came_grad_is_not():
  # Two task gradients (K = 2) of magnitudes far above 0.1, then their clipped copies: the LS
  # update cannot tell them apart (clip_grad_value_ 0.1 first), CAME-Grad's can.
  big = [{"w": jnp.array([[[3.0, -0.02], [0.5, 2.0]], [[1.0, 0.01], [-4.0, 0.3]]])},
         {"w": jnp.array([[[0.03, 2.0], [-0.5, 0.02]], [[0.2, -1.0], [0.04, 5.0]]])}]
  config = dataclasses.replace(PAPER, tasks=("nll", "cls"), task_weights=(1.0, 4.0))
  ls = train.make_method(config, "ls").tx
  joint = [{"w": g["w"][0] + 4.0 * g["w"][1]} for g in big]
  clipped_joint = [{"w": jnp.clip(g["w"], -0.1, 0.1)} for g in joint]
  plain = train.base_optimizer(dataclasses.replace(config, recipe="paper"), "came")
  for a, b in zip(_two_updates(ls, big), _two_updates(plain, clipped_joint)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)
  unclipped = _two_updates(plain, joint)
  assert not np.allclose(unclipped[1], _two_updates(plain, clipped_joint)[1], rtol=1e-3)
  came = train.make_method(config, "came")
  ref = optax.chain(came.transformation, plain)
  for a, b in zip(_two_updates(came.tx, big), _two_updates(ref, big)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)
  # The default recipe clips nothing.
  default_ls = train.make_method(dataclasses.replace(config, recipe="default"), "ls").tx
  default_plain = train.base_optimizer(dataclasses.replace(config, recipe="default"), "ls")
  for a, b in zip(_two_updates(default_ls, big), _two_updates(default_plain, joint)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


class _Tokenizer:
  vocab_size = 32


def _split():
  class S:
    images = np.zeros((2, 1, 32, 32, 1), np.float32)
    tokens = np.zeros((2, 24), np.int32)
  return S()
