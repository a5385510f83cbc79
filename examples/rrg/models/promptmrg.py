"""PromptMRG-style backbone (Jin et al., AAAI 2024): diagnosis-driven prompts.

The classification branch's predicted state of each of the 14 observations becomes one prompt
token that the report decoder reads before the report, so the decoder is told what the
classifier found. Prompt token ``i`` is the mixture ``sum_c p_ic E[i, c]`` of a learned
embedding per (observation, state) pair, weighted by the predicted probabilities ``p_i``.

Difference from PromptMRG, on purpose: PromptMRG writes the ground-truth states as text prompt
tokens during training and the argmax states at inference, so no gradient passes from the
report loss to the classifier. Here the prompts are the predicted probabilities in both, so
the report loss also trains the classification branch and the shared encoder through it: the
two tasks interact through a differentiable path, which is what a multi-task gradient method
acts on. PromptMRG's retrieval-augmented classifier input (a memory of retrieved reports) is
left out; the classifier reads the pooled image features as in the other backbones.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from examples.rrg.models.base import ReportModel
from examples.rrg.models.config import ModelConfig
from examples.rrg.models.layers import TransformerBlock


class PromptContext(NamedTuple):
  """What the PromptMRG decoder reads besides the report tokens."""
  image_tokens: jax.Array  # (B, S, D), cross-attended
  prompts: jax.Array  # (B, num_observations, D), prefix of the decoder's input


class PromptMRG(ReportModel):
  """Shared encoder and heads; the decoder's input is ``[14 prompt tokens; report tokens]``.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> cfg = ModelConfig(vocab_size=16, max_len=8, image_size=16, channels=(4, 8),
    ...                   d_model=16, num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)
    >>> model = PromptMRG(cfg, rngs=nnx.Rngs(0))
    >>> image_tokens, pooled = model.encode_images(jnp.zeros((2, 1, 16, 16, 1)))
    >>> model.decoder_context(image_tokens, pooled).prompts.shape
    (2, 14, 16)
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg, rngs=rngs)
    shape = (cfg.num_observations, cfg.num_classes, cfg.d_model)
    self.prompt_embed = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), shape))
    self.blocks = nnx.List([TransformerBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])

  def decoder_context(self, image_tokens: jax.Array, pooled: jax.Array) -> PromptContext:
    """Image tokens and the prompt tokens made from the classifier's predicted states."""
    probs = jax.nn.softmax(self.classify(pooled).astype(jnp.float32), axis=-1)  # (B, 14, 4)
    prompts = jnp.einsum("boc,ocd->bod", probs, self.prompt_embed[...])
    return PromptContext(image_tokens, prompts.astype(image_tokens.dtype))

  def decode(self, tokens: jax.Array, context: PromptContext) -> jax.Array:
    """Next-token logits ``(B, T, vocab)`` for the report positions only."""
    num_prompts = context.prompts.shape[1]
    x = jnp.concatenate([context.prompts, self.embed_tokens(tokens)], axis=1)
    mask = nnx.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))
    for block in self.blocks:
      x = block(x, context.image_tokens, mask)
    return self.logits(x[:, num_prompts:])
