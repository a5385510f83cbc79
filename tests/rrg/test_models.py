"""Shapes and view handling of the RRG encoder-decoder; sizes of every backbone.

Causal masking, training and encoder checkpoints of every backbone: test_backbones.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from examples.rrg import configs, models
from examples.rrg.models import ModelConfig, ReportGenerator, count_params
from tests.tiers import grid

TINY = ModelConfig(vocab_size=40, max_len=12, image_size=16, channels=(4, 8), d_model=16,
                   num_heads=2, num_layers=2, mlp_dim=32, embed_dim=8)


# Jitted entry points: one compilation per shape instead of op-by-op dispatch.
_forward = nnx.jit(lambda model, images, tokens: model(images, tokens))
_encode = nnx.jit(lambda model, images: model.encode_images(images))
_text_embedding = nnx.jit(lambda model, tokens: model.text_embedding(tokens))


def _inputs(batch=3, views=1, seed=0, cfg=TINY):
  rng = np.random.default_rng(seed)
  images = rng.uniform(size=(batch, views, cfg.image_size, cfg.image_size, 1))
  tokens = rng.integers(4, cfg.vocab_size, size=(batch, cfg.max_len))
  tokens[:, 0] = 1
  return jnp.asarray(images, jnp.float32), jnp.asarray(tokens, jnp.int32)


@pytest.mark.parametrize("views", grid([1, 2], fast=[2]))  # 1: the smoke run
def test_output_shapes(views):
  cfg = ModelConfig(**{**TINY.__dict__, "num_views": views})
  model = ReportGenerator(cfg, rngs=nnx.Rngs(0))
  images, tokens = _inputs(views=views, cfg=cfg)
  out = _forward(model, images, tokens)
  assert out["logits"].shape == (3, cfg.max_len - 1, cfg.vocab_size)
  assert out["cls_logits"].shape == (3, 14, 4)
  assert out["image_emb"].shape == (3, cfg.embed_dim)
  assert out["text_emb"].shape == (3, cfg.embed_dim)
  image_tokens, pooled = _encode(model, images)
  assert image_tokens.shape == (3, views * cfg.grid_size**2, cfg.d_model)
  assert pooled.shape == (3, cfg.d_model)
  np.testing.assert_allclose(jnp.linalg.norm(out["image_emb"], axis=-1), 1.0, rtol=1e-4)
  np.testing.assert_allclose(jnp.linalg.norm(out["text_emb"], axis=-1), 1.0, rtol=1e-4)
  for value in out.values():
    assert bool(jnp.all(jnp.isfinite(value)))


def test_decoder_reads_the_image_and_views_differ():
  cfg = ModelConfig(**{**TINY.__dict__, "num_views": 2})
  model = ReportGenerator(cfg, rngs=nnx.Rngs(2))
  images, tokens = _inputs(views=2, cfg=cfg)
  logits = _forward(model, images, tokens)["logits"]
  other = _forward(model, images.at[:, 0].set(1.0 - images[:, 0]), tokens)["logits"]
  assert float(jnp.max(jnp.abs(logits - other))) > 1e-4
  # Swapping the two views changes the features: the view embedding tells them apart.
  swapped = _forward(model, images[:, ::-1], tokens)["logits"]
  assert float(jnp.max(jnp.abs(logits - swapped))) > 1e-6


def test_text_embedding_ignores_padding():
  model = ReportGenerator(TINY, rngs=nnx.Rngs(3))
  tokens = jnp.array([[1, 5, 6, 7, 2, 0, 0, 0, 0, 0, 0, 0]], jnp.int32)
  embed = _text_embedding(model, tokens)
  np.testing.assert_allclose(embed, _text_embedding(model, tokens[:, :6]), rtol=1e-6)  # less pad
  other = tokens.at[:, 2].set(9)
  assert float(jnp.max(jnp.abs(embed - _text_embedding(model, other)))) > 0


def test_config_validation():
  with pytest.raises(ValueError, match="image_size"):
    ModelConfig(image_size=30, channels=(4, 8))
  with pytest.raises(ValueError, match="num_heads"):
    ModelConfig(d_model=30, num_heads=4)
  model = ReportGenerator(TINY, rngs=nnx.Rngs(0))
  images, _ = _inputs()
  too_long = jnp.ones((3, TINY.max_len + 1), jnp.int32)
  with pytest.raises(ValueError, match="max_len"):
    model.decode(too_long, model.encode_images(images)[0])


@pytest.mark.parametrize("backbone", sorted(models.BACKBONES))
@pytest.mark.parametrize("encoder", sorted(models.ENCODERS))
def test_default_model_size_fits_the_main_job(backbone, encoder):
  cfg = configs.default().model
  cfg = ModelConfig(**{**cfg.__dict__, "vocab_size": 300, "encoder": encoder})
  model = nnx.eval_shape(lambda: models.build_model(cfg, backbone, rngs=nnx.Rngs(0)))  # no FLOPs
  assert 0.05e6 < count_params(model) < 1.5e6  # the default is sized for 5 seeds on 2 CPU cores
  # Only parameters: no batch statistics, RNG streams or caches to checkpoint separately.
  assert not jax.tree.leaves(nnx.state(model, nnx.Not(nnx.Param)))
