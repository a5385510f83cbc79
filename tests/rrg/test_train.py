"""Losses, the multi-task train step and greedy decoding of the RRG example."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import came_grad_jax
from examples.rrg import configs, train
from examples.rrg.models import ModelConfig, ReportGenerator

CFG = ModelConfig(vocab_size=24, max_len=10, image_size=16, channels=(4, 8), d_model=16,
                  num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)
WEIGHTS = (1.0, 4.0, 1.0)


def _batch(seed=0, batch_size=6):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(4, CFG.vocab_size, size=(batch_size, CFG.max_len))
  tokens[:, 0] = 1
  lengths = rng.integers(3, CFG.max_len, size=batch_size)  # EOS position, then pad
  for i, n in enumerate(lengths):
    tokens[i, n], tokens[i, n + 1:] = 2, 0
  return {"images": jnp.asarray(rng.uniform(size=(batch_size, 1, 16, 16, 1)), jnp.float32),
          "tokens": jnp.asarray(tokens, jnp.int32),
          "labels": jnp.asarray(rng.integers(0, 4, size=(batch_size, 14)), jnp.int32)}


def _split(model):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, params, rest


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


def test_task_losses_order_and_validation():
  model = ReportGenerator(CFG, rngs=nnx.Rngs(0))
  batch = _batch()
  losses_fn = nnx.jit(train.task_losses, static_argnums=2)
  all3 = losses_fn(model, batch, train.TASKS)
  assert all3.shape == (3,)
  two = losses_fn(model, batch, ("cls", "nll"))
  np.testing.assert_allclose(two, all3[jnp.array([1, 0])], rtol=1e-6)
  with pytest.raises(ValueError, match="tasks"):
    train.task_losses(model, batch, ("nll", "retrieval"))


# -- methods -------------------------------------------------------------------------------------
def test_method_lookup():
  for name in ("ls", "linear_scalarization", "came", "came_grad", "cagrad"):
    tx = train.method_transformation(name, WEIGHTS)
    assert isinstance(tx, optax.GradientTransformation)
  with pytest.raises(ValueError, match="unknown method"):
    train.method_transformation("no_such_method", WEIGHTS)


def test_ls_equals_gradient_of_weighted_sum_and_came_is_a_reweighting():
  model = ReportGenerator(CFG, rngs=nnx.Rngs(1))
  batch = _batch(1)
  graphdef, params, rest = _split(model)
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
  model = ReportGenerator(CFG, rngs=nnx.Rngs(0))
  tx = train.make_optimizer(method, WEIGHTS, learning_rate=1e-2, weight_decay=0.0,
                            num_steps=40, warmup_steps=1)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  step = train.make_train_step()
  batch = _batch(2)
  history = [step(model, optimizer, batch) for _ in range(40)]
  first, last = np.asarray(history[0]["losses"]), np.asarray(history[-1]["losses"])
  assert np.all(last < 0.7 * first), (first, last)
  diag = jax.device_get(history[-1])
  assert diag["cosine"].shape == (3, 3) and diag["coefficients"].shape == (3,)
  assert all(np.all(np.isfinite(v)) for v in diag.values())
  if method == "ls":
    np.testing.assert_allclose(diag["drift_deg"], 0.0, atol=0.1)  # arccos near 1: ~0.03 deg
    np.testing.assert_allclose(diag["coefficients"], 1.0)


def test_k2_config_trains_two_tasks():
  config = configs.k2()
  assert config.tasks == ("nll", "cls") and config.task_weights == (1.0, 4.0)
  model = ReportGenerator(CFG, rngs=nnx.Rngs(0))
  tx = train.make_optimizer("came", config.task_weights, learning_rate=1e-2, weight_decay=0.0,
                            num_steps=5, warmup_steps=1)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  metrics = train.make_train_step(config.tasks)(model, optimizer, _batch())
  assert metrics["losses"].shape == (2,)
  assert metrics["cosine"].shape == (2, 2)
  assert float(metrics["energy_gain"]) > 0
  with pytest.raises(ValueError, match="task_weights"):
    configs.Config(tasks=("nll", "cls"), task_weights=(1.0, 4.0, 1.0))


# -- decoding ------------------------------------------------------------------------------------
def test_greedy_decode_matches_teacher_forced_argmax():
  model = ReportGenerator(CFG, rngs=nnx.Rngs(3))
  batch = _batch(3)
  out = np.asarray(train.greedy_decode(model, batch["images"], max_len=CFG.max_len))
  assert out.shape == (6, CFG.max_len) and np.all(out[:, 0] == train.BOS_ID)
  teacher_forced = nnx.jit(lambda m, images, tokens: jnp.argmax(
      m.decode(tokens, m.encode_images(images)[0]), -1))
  argmax = np.asarray(teacher_forced(model, batch["images"], jnp.asarray(out[:, :-1])))
  for row, pred in zip(out, argmax):
    ended = False
    for t in range(1, CFG.max_len):
      if ended:
        assert row[t] == train.PAD_ID
      else:
        assert row[t] == pred[t - 1]
        ended = row[t] == train.EOS_ID
