"""Image encoders: a plain strided CNN and a ResNet-style residual network, both in NNX.

Either trunk maps every view ``(H, W, 1)`` to a ``grid x grid`` feature map
(``grid = image_size / 2**len(channels)``); :class:`ImageEncoder` turns those maps into image
tokens of width ``d_model`` with a learned position and view embedding. The ResNet uses group
normalisation instead of batch normalisation, so the model's state stays parameters only
(nothing to thread through the train step, identical in training and evaluation).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from examples.rrg.models.config import ModelConfig


class ConvTrunk(nnx.Module):
  """``len(channels)`` stride-2 3x3 convolutions with ReLU (the original small CNN)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    widths = (1,) + tuple(cfg.channels)
    self.convs = nnx.List([
        nnx.Conv(w_in, w_out, (3, 3), strides=2, rngs=rngs)
        for w_in, w_out in zip(widths[:-1], widths[1:])
    ])

  def __call__(self, x: jax.Array) -> jax.Array:
    for conv in self.convs:
      x = nnx.relu(conv(x))
    return x


def _group_norm(width: int, *, zero_scale: bool = False, rngs: nnx.Rngs) -> nnx.GroupNorm:
  scale_init = nnx.initializers.zeros if zero_scale else nnx.initializers.ones
  return nnx.GroupNorm(width, num_groups=math.gcd(width, 8), scale_init=scale_init, rngs=rngs)


class ResidualBlock(nnx.Module):
  """Basic residual block (two 3x3 convolutions) with group norm.

  The second norm's scale starts at zero, so every block starts as its shortcut (the
  "zero-init residual" of Goyal et al., 2017); a 1x1 projection shortcut matches stride and
  width when they change.
  """

  def __init__(self, w_in: int, w_out: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(w_in, w_out, (3, 3), strides=stride, use_bias=False, rngs=rngs)
    self.norm1 = _group_norm(w_out, rngs=rngs)
    self.conv2 = nnx.Conv(w_out, w_out, (3, 3), use_bias=False, rngs=rngs)
    self.norm2 = _group_norm(w_out, zero_scale=True, rngs=rngs)
    self.project = stride != 1 or w_in != w_out
    if self.project:
      self.shortcut = nnx.Conv(w_in, w_out, (1, 1), strides=stride, use_bias=False, rngs=rngs)
      self.shortcut_norm = _group_norm(w_out, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = nnx.relu(self.norm1(self.conv1(x)))
    y = self.norm2(self.conv2(y))
    skip = self.shortcut_norm(self.shortcut(x)) if self.project else x
    return nnx.relu(y + skip)


class ResNetTrunk(nnx.Module):
  """Stride-2 stem to ``channels[0]``, then one stage per width of ``resnet_blocks`` blocks.

  Every stage after the first starts with a stride-2 block, so the trunk halves H and W
  ``len(channels)`` times, like :class:`ConvTrunk`.
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    widths = tuple(cfg.channels)
    self.stem = nnx.Conv(1, widths[0], (3, 3), strides=2, use_bias=False, rngs=rngs)
    self.stem_norm = _group_norm(widths[0], rngs=rngs)
    blocks, w_in = [], widths[0]
    for stage, width in enumerate(widths):
      for i in range(cfg.resnet_blocks):
        stride = 2 if stage > 0 and i == 0 else 1
        blocks.append(ResidualBlock(w_in, width, stride, rngs=rngs))
        w_in = width
    self.blocks = nnx.List(blocks)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.relu(self.stem_norm(self.stem(x)))
    for block in self.blocks:
      x = block(x)
    return x


ENCODERS = {"cnn": ConvTrunk, "resnet": ResNetTrunk}
"""Encoder name (``ModelConfig.encoder``) -> trunk class."""


class ImageEncoder(nnx.Module):
  """Trunk shared by all views -> ``V * grid**2`` image tokens of width ``d_model``.

  With ``cfg.bottleneck = b > 0`` and ``cfg.bottleneck_kind``:

  * ``"token"``: each token of the trunk is first projected to width ``b`` and scaled to unit
    norm (times ``sqrt(b)``), then projected to ``d_model``: a narrow representation per token
    that every task's head and the decoder must share (but a token can still carry whatever
    is at its place, so findings in different places do not compete);
  * ``"global"``: the whole feature map of a view (flattened, so where a finding is survives)
    is projected to ONE vector of width ``b``, unit-RMS (:meth:`code`), then expanded by a
    learned linear map to ``cfg.bottleneck_tokens`` memory tokens (plus position embeddings).
    Those tokens are all the decoder attends to and their mean is all the classifier reads, so
    the tasks see the image only through the ``b`` numbers and compete for them.
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    if cfg.encoder not in ENCODERS:
      raise ValueError(f"unknown encoder {cfg.encoder!r}; expected one of {sorted(ENCODERS)}")
    self.trunk = ENCODERS[cfg.encoder](cfg, rngs=rngs)
    width = cfg.channels[-1]
    self.bottleneck = cfg.bottleneck
    self.kind = cfg.bottleneck_kind if cfg.bottleneck else "none"
    positions = cfg.grid_size**2
    if self.kind == "token":
      self.squeeze = nnx.Linear(width, cfg.bottleneck, rngs=rngs)
      width = cfg.bottleneck
    elif self.kind == "global":
      self.squeeze = nnx.Linear(positions * width, cfg.bottleneck, rngs=rngs)
      positions, width = cfg.bottleneck_tokens, cfg.bottleneck
      self.expand = nnx.Linear(width, positions * cfg.d_model, rngs=rngs)
    if self.kind != "global":
      self.proj = nnx.Linear(width, cfg.d_model, rngs=rngs)
    init = nnx.initializers.normal(0.02)
    self.patch_pos = nnx.Param(init(rngs.params(), (positions, cfg.d_model)))
    self.view_embed = nnx.Param(init(rngs.params(), (cfg.num_views, cfg.d_model)))
    self.norm = nnx.LayerNorm(cfg.d_model, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    """``(B, V, H, W, 1)`` in [0, 1] -> image tokens ``(B, V * P, d_model)``: ``P = grid**2``,
    or ``bottleneck_tokens`` with the global bottleneck."""
    b, v, h, w, c = images.shape
    x = self.trunk(images.reshape(b * v, h, w, c) * 2.0 - 1.0)
    if self.kind == "global":
      z = self.code(x.reshape(b * v, -1))
      x = self.expand(z).reshape(b, v, -1, self.patch_pos.shape[-1])  # (B, V, M, D)
    else:
      if self.kind == "token":
        x = _unit_rms(self.squeeze(x))
      x = self.proj(x.reshape(b, v, -1, x.shape[-1]))  # (B, V, P, D)
    x = x + self.patch_pos[None, None] + self.view_embed[None, :v, None]
    return self.norm(x.reshape(b, -1, x.shape[-1]))

  def code(self, features: jax.Array) -> jax.Array:
    """The global bottleneck's unit-RMS vector ``(N, bottleneck)`` of flattened feature maps."""
    return _unit_rms(self.squeeze(features))


def _unit_rms(x: jax.Array) -> jax.Array:
  """``x`` scaled to unit root-mean-square over its last axis (norm ``sqrt(width)``)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.mean(x * x, axis=-1, keepdims=True), 1e-12))
