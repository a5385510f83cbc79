"""Losses, the multi-task train step and greedy decoding of the RRG example."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import came_grad_jax
from examples.rrg import configs, main, train

# Everything runs at the shapes of the `smoke` config with its optimizers, so the compiled
# train steps are shared with test_main and test_checkpoint (train.make_train_step and
# train.config_optimizer are cached).
SMOKE = configs.smoke()
WEIGHTS = SMOKE.task_weights


@functools.lru_cache(maxsize=None)
def _data():
  return main.load_data(SMOKE)


def _model(seed=0, config=SMOKE):
  data, tokenizer = _data()
  return train.create_model(config, tokenizer, data["train"], seed)


def _batch(seed=0):
  data, _ = _data()
  return next(train.batch_stream(data["train"], SMOKE.batch_size, seed))


# -- losses --------------------------------------------------------------------------------------
def test_nll_ignores_padding_and_classification_is_uniform_at_zero_logits():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
  targets = jnp.array([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0]])
  base = train.nll_loss(logits, targets)
  changed = train.nll_loss(logits.at[:, 3:].add(10.0), targets)  # only pad targets change
  np.testing.assert_allclose(base, changed, rtol=1e-6)
  assert float(train.nll_loss(logits.at[0, 0, 4].add(10.0), targets)) < float(base)
  ce = train.classification_loss(jnp.zeros((3, 14, 4)), jnp.zeros((3, 14), jnp.int32))
  np.testing.assert_allclose(ce, np.log(4.0), rtol=1e-6)


def test_alignment_loss_counts_identical_reports_as_positives():
  emb = jnp.eye(4, 8)
  distinct = jnp.arange(4 * 3).reshape(4, 3)
  # Perfectly aligned, well separated pairs: the loss is near zero.
  assert float(train.alignment_loss(emb, emb, distinct, temperature=0.01)) < 1e-3
  # Reports 0 and 1 identical and their embeddings too: the best possible loss is log 2 for
  # those rows when they are positives of each other (one-hot targets would say the same
  # value but push 0 and 1 apart); rows 2 and 3 stay near 0.
  dup_tokens = distinct.at[1].set(distinct[0])
  dup_emb = emb.at[1].set(emb[0])
  loss = train.alignment_loss(dup_emb, dup_emb, dup_tokens, temperature=0.01)
  np.testing.assert_allclose(loss, 0.5 * np.log(2.0), rtol=1e-3)
  grad = jax.grad(lambda e: train.alignment_loss(e, dup_emb, dup_tokens, 0.01))(dup_emb)
  np.testing.assert_allclose(grad, 0.0, atol=1e-4)  # already optimal: nothing to push apart


def test_task_losses_validation():
  # Checked before the model is touched.
  with pytest.raises(ValueError, match="tasks"):
    train.task_losses(None, _batch(), ("nll", "retrieval"))
  with pytest.raises(ValueError, match="tasks"):
    train.task_losses(None, _batch(), ())


# -- methods -------------------------------------------------------------------------------------
def test_method_lookup():
  for name in ("ls", "linear_scalarization", "came", "came_grad", "cagrad"):
    tx = train.method_transformation(name, WEIGHTS)
    assert isinstance(tx, optax.GradientTransformation)
  # Other methods of the library are found by name (their numerics are tested with the core).
  for name in ("mgda", "pcgrad", "upgrad"):
    if hasattr(came_grad_jax.weightings, name):
      assert isinstance(train.method_transformation(name, WEIGHTS), optax.GradientTransformation)
  with pytest.raises(ValueError, match="unknown method"):
    train.method_transformation("no_such_method", WEIGHTS)


def test_ls_equals_gradient_of_weighted_sum_and_came_is_a_reweighting():
  model = _model(1)
  batch = _batch(1)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = nnx.to_pure_dict(params)

  def losses_of(p):
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, p)
    return train.task_losses(nnx.merge(graphdef, state, rest), batch)

  losses, task_grads = jax.jit(came_grad_jax.value_and_task_grads(losses_of))(params)
  # grad of sum_k c_k w_k L_k, one compilation for every c.
  weighted_grad = jax.jit(jax.grad(lambda p, cw: jnp.sum(cw * losses_of(p))))
  w = jnp.asarray(WEIGHTS)
  expected = weighted_grad(params, w)

  tx = train.method_transformation("ls", WEIGHTS)
  update, _ = jax.jit(tx.update)(task_grads, tx.init(params), params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6),
               update, expected)

  # CAME-Grad returns sum_k c_k w_k g_k = grad of sum_k stop_gradient(c_k) w_k L_k.
  tx = train.method_transformation("came", WEIGHTS)
  update, state = jax.jit(tx.update)(task_grads, tx.init(params), params)
  c = state.diagnostics.coefficients
  assert not np.allclose(c, 1.0)  # a real reweighting, or this test proves nothing
  expected = weighted_grad(params, c * w)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6),
               update, expected)


# -- train step ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["ls", "came"])
def test_tiny_overfit_reduces_every_loss(method):
  model = _model()
  optimizer = train.create_optimizer(SMOKE, model, method)  # lr 1e-2, then 1e-3 after 6 steps
  step = train.make_train_step(SMOKE.tasks, temperature=SMOKE.temperature)
  batch = _batch(2)
  history = [step(model, optimizer, batch) for _ in range(30)]
  first, last = np.asarray(history[0]["losses"]), np.asarray(history[-1]["losses"])
  assert np.all(last < 0.9 * first) and last[0] < 0.7 * first[0], (first, last)
  diag = jax.device_get(history[-1])
  assert diag["cosine"].shape == (3, 3) and diag["coefficients"].shape == (3,)
  assert all(np.all(np.isfinite(v)) for v in diag.values())
  if method == "ls":
    np.testing.assert_allclose(diag["drift_deg"], 0.0, atol=0.1)  # arccos near 1: ~0.03 deg
    np.testing.assert_allclose(diag["coefficients"], 1.0)
  else:
    assert float(diag["drift_deg"]) > 0.1 and float(diag["energy_gain"]) > 1.0


def test_k2_config_trains_two_tasks():
  k2 = configs.k2()
  assert k2.tasks == ("nll", "cls") and k2.task_weights == (1.0, 4.0)
  config = dataclasses.replace(SMOKE, tasks=k2.tasks, task_weights=k2.task_weights)
  model = _model(config=config)
  batch = _batch()
  all_three = nnx.jit(train.task_losses, static_argnums=2)(model, batch, train.TASKS)
  optimizer = train.create_optimizer(config, model, "came")
  metrics = train.make_train_step(config.tasks)(model, optimizer, batch)
  # The step reports the losses before its update, in the order of config.tasks.
  np.testing.assert_allclose(metrics["losses"], all_three[:2], rtol=1e-5)
  assert metrics["cosine"].shape == (2, 2)
  assert float(metrics["energy_gain"]) > 0
  with pytest.raises(ValueError, match="task_weights"):
    configs.Config(tasks=("nll", "cls"), task_weights=(1.0, 4.0, 1.0))


# -- decoding ------------------------------------------------------------------------------------
def test_greedy_decode_matches_teacher_forced_argmax():
  model = _model(3)
  test = _data()[0]["test"]
  images = jnp.asarray(test.images[:SMOKE.eval_batch_size])  # the shape evaluation compiles
  max_len = test.tokens.shape[1]
  out = np.asarray(train.greedy_decode(model, images, max_len=max_len))
  assert out.shape == (images.shape[0], max_len) and np.all(out[:, 0] == train.BOS_ID)
  teacher_forced = nnx.jit(lambda m, images, tokens: jnp.argmax(
      m.decode(tokens, m.encode_images(images)[0]), -1))
  argmax = np.asarray(teacher_forced(model, images, jnp.asarray(out[:, :-1])))
  for row, pred in zip(out, argmax):
    ended = False
    for t in range(1, max_len):
      if ended:
        assert row[t] == train.PAD_ID
      else:
        assert row[t] == pred[t - 1]
        ended = row[t] == train.EOS_ID
