"""The three RRG backbones: shapes, causal masking, the shared task-loss contract, a training
smoke test, and encoder initialisation from a local checkpoint file."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from examples.rrg import models
from examples.rrg.training import tasks
from tests.tiers import grid

TINY = models.ModelConfig(vocab_size=24, max_len=10, image_size=16, channels=(4, 8), d_model=16,
                          num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8, rm_dim=8,
                          num_views=2)
BACKBONES = sorted(models.BACKBONES)

_forward = nnx.jit(lambda model, images, tokens: model(images, tokens))
_context = nnx.jit(lambda model, images: model.decoder_context(*model.encode_images(images)))
_decode = nnx.jit(lambda model, tokens, context: model.decode(tokens, context))


@functools.cache
def _model(backbone, encoder="cnn", seed=0):
  cfg = dataclasses.replace(TINY, encoder=encoder)
  return models.build_model(cfg, backbone, rngs=nnx.Rngs(seed))


def _batch(batch=4, seed=0, cfg=TINY):
  rng = np.random.default_rng(seed)
  images = rng.uniform(size=(batch, cfg.num_views, cfg.image_size, cfg.image_size, 1))
  tokens = rng.integers(4, cfg.vocab_size, size=(batch, cfg.max_len))
  tokens[:, 0] = tasks.BOS_ID
  tokens[:, -1] = tasks.EOS_ID
  labels = rng.integers(0, cfg.num_classes, size=(batch, cfg.num_observations))
  return {"images": jnp.asarray(images, jnp.float32), "tokens": jnp.asarray(tokens, jnp.int32),
          "labels": jnp.asarray(labels, jnp.int32)}


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("backbone", grid(BACKBONES, fast=[]))  # the smoke run: encoder_decoder
def test_shapes(backbone):
  model = _model(backbone)
  assert isinstance(model, models.ReportModel)
  batch = _batch()
  out = _forward(model, batch["images"], batch["tokens"])
  assert out["logits"].shape == (4, TINY.max_len - 1, TINY.vocab_size)
  assert out["cls_logits"].shape == (4, TINY.num_observations, TINY.num_classes)
  assert out["image_emb"].shape == out["text_emb"].shape == (4, TINY.embed_dim)
  for value in out.values():
    assert bool(jnp.all(jnp.isfinite(value)))
  # Only parameters: nothing besides them to checkpoint or thread through the train step.
  assert not jax.tree.leaves(nnx.state(model, nnx.Not(nnx.Param)))


@pytest.mark.parametrize("backbone", grid(BACKBONES, fast=["promptmrg"]))
def test_decoder_is_causal(backbone):
  model = _model(backbone)
  batch = _batch(seed=1)
  context = _context(model, batch["images"])
  tokens = batch["tokens"][:, :-1]
  t = 4
  changed = tokens.at[:, t].set((tokens[:, t] - 4 + 1) % (TINY.vocab_size - 4) + 4)
  before = _decode(model, tokens, context)
  after = _decode(model, changed, context)
  # Positions < t cannot see token t (bitwise: the same operations on the same numbers, up to
  # the fused matmuls' rounding); position t and later must.
  assert _rel(after[:, :t], before[:, :t]) <= 1e-6
  assert _rel(after[:, t:], before[:, t:]) > 1e-4
  # The decoder reads the image.
  other = _context(model, 1.0 - batch["images"])
  assert _rel(_decode(model, tokens, other), before) > 1e-4


@pytest.mark.slow
def test_promptmrg_report_loss_reaches_the_classifier():
  # The diagnosis-driven prompts make the report loss depend on the classification head;
  # the plain encoder-decoder's report loss does not touch it.
  batch = _batch(seed=2)

  @nnx.jit
  def cls_head_grad(model):
    grads = nnx.grad(lambda m: tasks.task_loss_terms(m, batch, ("nll",))[0])(model)
    return grads.cls_out.kernel[...]

  assert float(jnp.linalg.norm(cls_head_grad(_model("promptmrg")))) > 1e-6
  assert float(jnp.linalg.norm(cls_head_grad(_model("encoder_decoder")))) == 0.0


@pytest.mark.slow
def test_resnet_encoder_shapes_and_zero_init_residuals():
  model = _model("encoder_decoder", "resnet")
  batch = _batch()
  tokens, pooled = nnx.jit(lambda m, x: m.encode_images(x))(model, batch["images"])
  assert tokens.shape == (4, TINY.num_views * TINY.grid_size**2, TINY.d_model)
  assert pooled.shape == (4, TINY.d_model)
  trunk = model.encoder.trunk
  assert len(trunk.blocks) == len(TINY.channels) * TINY.resnet_blocks
  assert all(float(jnp.abs(b.norm2.scale[...]).max()) == 0.0 for b in trunk.blocks)
  assert bool(jnp.all(jnp.isfinite(_forward(model, batch["images"], batch["tokens"])["logits"])))


def test_unknown_names_are_clear_errors():
  with pytest.raises(ValueError, match="backbone 'r2genn'"):
    models.build_model(TINY, "r2genn", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="encoder 'vit'"):
    models.build_model(dataclasses.replace(TINY, encoder="vit"), "encoder_decoder", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="rm_dim"):
    dataclasses.replace(TINY, rm_dim=9, rm_num_heads=2)


# -- training smoke test: the shared contract, a few steps on one tiny batch ----------------------
@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_training_reduces_every_loss(backbone):
  model = models.build_model(TINY, backbone, rngs=nnx.Rngs(3))
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  batch = _batch(batch=8, seed=3)
  weights = jnp.array([1.0, 4.0, 1.0])

  @nnx.jit
  def step(model, optimizer):
    def weighted(model):
      losses = jnp.stack(tasks.task_loss_terms(model, batch))
      return jnp.sum(weights * losses), losses

    (_, losses), grads = nnx.value_and_grad(weighted, has_aux=True)(model)
    optimizer.update(model, grads)
    return losses

  history = np.array([step(model, optimizer) for _ in range(15)])
  assert np.all(np.isfinite(history))
  first, last = history[0], history[-1]
  assert np.all(last < first) and weights @ last < 0.8 * (weights @ first), (first, last)


# -- encoder from a local checkpoint -------------------------------------------------------------
def _encoder_params(model):
  return nnx.to_pure_dict(nnx.state(model.encoder, nnx.Param))


@pytest.mark.parametrize("fmt", ["npz", "orbax"])
def test_encoder_loads_from_a_local_checkpoint(tmp_path, fmt):
  source = _model("encoder_decoder", "resnet", seed=5)
  path = str(tmp_path / ("encoder.npz" if fmt == "npz" else "encoder_ckpt"))
  models.save_params(source.encoder, path)
  cfg = dataclasses.replace(TINY, encoder="resnet", encoder_checkpoint=path)
  # Another backbone and seed: only the encoder comes from the file.
  model = models.build_model(cfg, "r2gen", rngs=nnx.Rngs(6))
  fresh = models.build_model(dataclasses.replace(cfg, encoder_checkpoint=None), "r2gen",
                             rngs=nnx.Rngs(6))
  jax.tree.map(np.testing.assert_array_equal, _encoder_params(model), _encoder_params(source))
  np.testing.assert_array_equal(model.lm_head.kernel[...], fresh.lm_head.kernel[...])
  assert _rel(fresh.encoder.proj.kernel[...], source.encoder.proj.kernel[...]) > 0.1


def test_encoder_checkpoint_under_a_prefix_and_errors(tmp_path):
  source = _model("encoder_decoder", "cnn", seed=7)
  # A whole-model save: the encoder's parameters sit under "encoder/".
  whole = str(tmp_path / "model.npz")
  models.save_params(source, whole)
  target = models.build_model(TINY, "promptmrg", rngs=nnx.Rngs(8))
  models.load_params(target.encoder, whole)
  jax.tree.map(np.testing.assert_array_equal, _encoder_params(target), _encoder_params(source))

  # Wrong shape: the message names the file and the parameter path.
  wide = models.build_model(dataclasses.replace(TINY, channels=(4, 12)), "encoder_decoder",
                            rngs=nnx.Rngs(0))
  wrong = str(tmp_path / "wide.npz")
  models.save_params(wide.encoder, wrong)
  with pytest.raises(ValueError, match=r"wide\.npz.*'trunk/convs/1/kernel' has shape \(3, 3, 4, 12\)"):
    models.load_params(target.encoder, wrong)
  # A deeper encoder's checkpoint has parameters this one lacks.
  deep = models.build_model(dataclasses.replace(TINY, channels=(4, 8, 8)), "encoder_decoder",
                            rngs=nnx.Rngs(0))
  models.save_params(deep.encoder, str(tmp_path / "deep.npz"))
  with pytest.raises(ValueError, match=r"deep\.npz.*has 2 param.*does not: trunk/convs/2/bias"):
    models.load_params(target.encoder, str(tmp_path / "deep.npz"))
  # Missing parameters, a missing file, an unknown format.
  np.savez(tmp_path / "part.npz", **{"proj/kernel": np.zeros((8, 16), np.float32)})
  with pytest.raises(ValueError, match=r"part\.npz.*lacks 9 parameter.*: norm/bias"):
    models.load_params(target.encoder, str(tmp_path / "part.npz"))
  with pytest.raises(FileNotFoundError, match="nowhere.npz"):
    models.build_model(dataclasses.replace(TINY, encoder_checkpoint=str(tmp_path / "nowhere.npz")),
                       "encoder_decoder", rngs=nnx.Rngs(0))
  (tmp_path / "enc.pt").write_bytes(b"\0")
  with pytest.raises(ValueError, match=r"enc\.pt.*\.npz file or an Orbax directory"):
    models.load_params(target.encoder, str(tmp_path / "enc.pt"))
