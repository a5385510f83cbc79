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
from examples.rrg import configs
from examples.rrg.data import input_pipeline
from examples.rrg.models import decode
from examples.rrg.training import train

# Everything runs at the shapes of the `smoke` config.
SMOKE = configs.smoke()
WEIGHTS = SMOKE.task_weights


@functools.cache
def _data():
  return train.load_data(SMOKE)


def _model(seed=0, config=SMOKE):
  data, tokenizer = _data()
  return train.create_model(config, tokenizer, data["train"], seed)


def _batch(seed=0):
  data, _ = _data()
  return next(input_pipeline.train_iterator(data["train"], SMOKE.batch_size, seed))


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


@pytest.mark.slow
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
def _close(a, b, rel=1e-5):
  """Trees equal up to float32 rounding, relative to the norm of the tree ``b``.

  Per leaf would be too strict: a leaf whose gradient is ~1e-9 (a parameter the loss barely
  reaches) is all rounding noise, whatever the code path.
  """
  diff = [np.asarray(x, np.float64) - np.asarray(y, np.float64)
          for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]
  norm = np.sqrt(sum(np.sum(np.asarray(y, np.float64) ** 2) for y in jax.tree.leaves(b)))
  err = np.sqrt(sum(np.sum(d ** 2) for d in diff))
  assert err <= rel * norm, (err, norm)


def test_methods_come_from_the_registry():
  names = train.method_names()
  assert {"ls", "came", "cagrad", "famo", "dwa", "uncertainty"} <= set(names)
  for name in names:
    method = train.make_method(SMOKE, name)
    assert method.kind in ("gradient", "loss") and method.name == name
    assert isinstance(method.tx, optax.GradientTransformation)
    assert (method.weighting is None) == (method.kind == "gradient")
    assert (method.transformation is None) == (method.kind == "loss")
  with pytest.raises(ValueError, match="unknown method"):
    train.make_method(SMOKE, "no_such_method")


def test_warmup_is_a_fraction_of_the_budget():
  for steps in (10, 100, 1000):
    config = dataclasses.replace(SMOKE, num_steps=steps, warmup_fraction=0.1, learning_rate=1.0)
    schedule = train.learning_rate(config)
    assert config.warmup_steps == steps // 10
    # The peak is reached at the end of the warmup, whatever the budget.
    np.testing.assert_allclose(schedule(config.warmup_steps), 1.0, rtol=1e-6)
    assert float(schedule(config.warmup_steps // 2)) < 0.6
    np.testing.assert_allclose(schedule(steps), 0.1, rtol=1e-5)
  with pytest.raises(ValueError, match="warmup_fraction"):
    dataclasses.replace(SMOKE, warmup_fraction=1.0)


@pytest.mark.slow
def test_ls_equals_gradient_of_weighted_sum_and_came_is_a_reweighting():
  model = _model(1)
  batch = _batch(1)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = nnx.to_pure_dict(params)

  def losses_of(p):
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, p)
    return train.task_losses(nnx.merge(graphdef, state, rest), batch, SMOKE.tasks)

  losses, task_grads = jax.jit(came_grad_jax.value_and_task_grads(losses_of))(params)
  # grad of sum_k c_k w_k L_k, one compilation for every c.
  weighted_grad = jax.jit(jax.grad(lambda p, cw: jnp.sum(cw * losses_of(p))))
  w = jnp.asarray(WEIGHTS)
  expected = weighted_grad(params, w)

  method_tx = train.make_method(SMOKE, "ls").transformation  # the method before AdamW
  update, _ = jax.jit(method_tx.update)(task_grads, method_tx.init(params), params)
  _close(update, expected)

  # CAME-Grad returns sum_k c_k w_k g_k = grad of sum_k stop_gradient(c_k) w_k L_k.
  method_tx = train.make_method(SMOKE, "came").transformation
  update, state = jax.jit(method_tx.update)(task_grads, method_tx.init(params), params)
  c = optax.tree_utils.tree_get(state, "diagnostics").coefficients
  assert not np.allclose(c, 1.0)  # a real reweighting, or this test proves nothing
  _close(update, weighted_grad(params, c * w))


@pytest.mark.slow
def test_plain_ls_trainer_takes_the_same_step_as_ls_through_the_registry():
  # SGD(1) after the method: the parameters move by exactly the gradient the trainer built.
  batch = _batch(4)
  moved = {}
  for name in ("ls", "ls_plain"):
    model = _model(4)
    method = train.make_method(SMOKE, name)
    sgd = optax.sgd(1.0)
    method = dataclasses.replace(
        method, tx=optax.chain(method.transformation, sgd) if method.kind == "gradient" else sgd)
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    optimizer = train.create_optimizer(SMOKE, model, method)
    metrics, _ = train.step_function(SMOKE, method)(model, optimizer, None, batch)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    moved[name] = (np.asarray(metrics["losses"]), jax.tree.map(jnp.subtract, before, after))
  assert moved["ls"][0].shape == (3,)
  _close(moved["ls_plain"][0], moved["ls"][0])
  _close(moved["ls_plain"][1], moved["ls"][1], rel=1e-4)


@pytest.mark.slow
def test_loss_weighting_step_weights_the_losses():
  model = _model(5)
  method = train.make_method(SMOKE, "famo")
  optimizer = train.create_optimizer(SMOKE, model, method)
  state = method.weighting.init(len(SMOKE.tasks))
  step = train.step_function(SMOKE, method)
  for _ in range(3):
    metrics, state = step(model, optimizer, state, _batch(5))
  lam = np.asarray(metrics["coefficients"])
  assert lam.shape == (3,) and np.all(lam > 0) and np.all(np.isfinite(lam))
  assert int(state.count) == 3


# -- train step ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method", ["ls", "came"])
def test_tiny_overfit_reduces_every_loss(method):
  model = _model()
  optimizer = train.create_optimizer(SMOKE, model, method)  # lr 1e-2 with warmup, 6 steps
  batch = _batch(2)
  history = [train.gradient_step(model, optimizer, batch, tasks=SMOKE.tasks,
                                 temperature=SMOKE.temperature) for _ in range(30)]
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


@pytest.mark.slow
def test_default_config_is_the_papers_setting_and_trains_two_tasks():
  default = configs.default()
  assert default.tasks == ("nll", "cls") and default.task_weights == (1.0, 4.0)
  assert len(default.seeds) >= 5 and default.methods == ("ls", "came")
  assert configs.k3().tasks == ("nll", "cls", "align")
  config = dataclasses.replace(SMOKE, tasks=default.tasks, task_weights=default.task_weights)
  model = _model(config=config)
  batch = _batch()
  all_three = nnx.jit(train.task_losses, static_argnums=2)(model, batch, train.TASKS)
  optimizer = train.create_optimizer(config, model, "came")
  metrics = train.gradient_step(model, optimizer, batch, tasks=config.tasks,
                                temperature=config.temperature)
  # The step reports the losses before its update, in the order of config.tasks.
  _close(metrics["losses"], all_three[:2])
  assert metrics["cosine"].shape == (2, 2)
  assert float(metrics["energy_gain"]) > 0
  with pytest.raises(ValueError, match="task_weights"):
    configs.Config(tasks=("nll", "cls"), task_weights=(1.0, 4.0, 1.0))


@pytest.mark.slow
def test_train_and_evaluate_selects_on_val_and_writes_curves(tmp_path):
  config = dataclasses.replace(SMOKE, method="ls", num_steps=4, eval_every=2)
  result = train.train_and_evaluate(config, str(tmp_path), data=_data(), progress=False)
  assert [s for s, _ in result.val_curve] == [2, 4]
  best = max(v for _, v in result.val_curve)
  assert result.selected_step == max(s for s, v in result.val_curve if v == best)  # ties: later
  assert result.history["losses"].shape == (4, 3) and len(result.outputs) == len(result.hypotheses)
  assert result.compile_time > 0 and result.train_time >= 0 and result.step_time >= 0
  run_dir = tmp_path / "ls_seed0"
  for name in ("curves.csv", "curves.json", "reports.json", "metrics.json"):
    assert (run_dir / name).stat().st_size > 0, name
  assert any((run_dir / "tensorboard").iterdir())
  header = (run_dir / "curves.csv").read_text().splitlines()[0].split(",")
  assert header[:4] == ["step", "loss/nll", "loss/cls", "loss/align"]
  assert "cosine/nll-cls" in header and "drift_deg" in header and "coefficient/cls" in header


# -- decoding ------------------------------------------------------------------------------------
def test_greedy_decode_matches_teacher_forced_argmax():
  model = _model(3)
  test = _data()[0]["test"]
  images = jnp.asarray(test.images[:SMOKE.eval_batch_size])  # the shape evaluation compiles
  max_len = test.tokens.shape[1]
  out = np.asarray(decode.greedy_decode(model, images, max_len=max_len))
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
