"""The plain encoder-decoder: a causal transformer decoder cross-attending to the image tokens."""

from __future__ import annotations

import jax
from flax import nnx

from examples.rrg.models.base import ReportModel
from examples.rrg.models.config import ModelConfig
from examples.rrg.models.layers import TransformerBlock


class EncoderDecoder(ReportModel):
  """Image encoder + ``num_layers`` pre-norm decoder blocks + the shared task heads.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> cfg = ModelConfig(vocab_size=16, max_len=8, image_size=16, channels=(4, 8),
    ...                   d_model=16, num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)
    >>> model = EncoderDecoder(cfg, rngs=nnx.Rngs(0))
    >>> out = model(jnp.zeros((2, 1, 16, 16, 1)), jnp.ones((2, 8), jnp.int32))
    >>> out["logits"].shape, out["cls_logits"].shape
    ((2, 7, 16), (2, 14, 4))
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg, rngs=rngs)
    self.blocks = nnx.List([TransformerBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])

  def decoder_context(self, image_tokens: jax.Array, pooled: jax.Array) -> jax.Array:
    """The image tokens themselves."""
    del pooled
    return image_tokens

  def decode(self, tokens: jax.Array, context: jax.Array) -> jax.Array:
    """Next-token logits ``(B, T, vocab)``; ``context`` is the image tokens ``(B, S, D)``."""
    x = self.embed_tokens(tokens)
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, context, mask)
    return self.logits(x)
