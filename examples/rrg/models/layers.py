"""The pre-norm transformer block every backbone is made of.

One block: (causal) self-attention, optional cross-attention to image tokens, MLP, each behind
its own normalisation. The normalisation is a parameter: ``nnx.LayerNorm`` for the plain
decoders, the memory-driven conditional layer norm for the R2Gen-style one, which takes the
memory as a second argument (``cond``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from examples.rrg.models.config import ModelConfig

NormFactory = Callable[..., nnx.Module]  # (width, *, rngs) -> module called as norm(x, *cond)


def layer_norm(width: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(width, rngs=rngs)


def attention(cfg: ModelConfig, *, rngs: nnx.Rngs) -> nnx.MultiHeadAttention:
  """Multi-head attention of width ``d_model`` without dropout or a decoding cache."""
  return nnx.MultiHeadAttention(
      num_heads=cfg.num_heads, in_features=cfg.d_model, decode=False, deterministic=True,
      keep_rngs=False, rngs=rngs)


class TransformerBlock(nnx.Module):
  """Pre-norm block: self-attention, cross-attention (if ``cross``), MLP."""

  def __init__(self, cfg: ModelConfig, *, cross: bool = True, norm: NormFactory = layer_norm,
               rngs: nnx.Rngs):
    d = cfg.d_model
    self.norm_self = norm(d, rngs=rngs)
    self.self_attn = attention(cfg, rngs=rngs)
    self.cross = cross
    if cross:
      self.norm_cross = norm(d, rngs=rngs)
      self.cross_attn = attention(cfg, rngs=rngs)
    self.norm_mlp = norm(d, rngs=rngs)
    self.mlp_in = nnx.Linear(d, cfg.mlp_dim, rngs=rngs)
    self.mlp_out = nnx.Linear(cfg.mlp_dim, d, rngs=rngs)

  def __call__(self, x: jax.Array, image_tokens: jax.Array | None = None,
               mask: jax.Array | None = None, cond: tuple = ()) -> jax.Array:
    """``x (B, T, D)``; ``mask`` broadcastable to ``(B, heads, T, T)``; ``cond`` for the norms."""
    x = x + self.self_attn(self.norm_self(x, *cond), mask=mask)
    if self.cross:
      x = x + self.cross_attn(self.norm_cross(x, *cond), image_tokens)
    return x + self.mlp_out(nnx.gelu(self.mlp_in(self.norm_mlp(x, *cond))))
