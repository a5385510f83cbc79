"""What every RRG backbone shares: the image encoder, the token embedding and the task heads.

One image encoder feeds three heads, which is what makes the tasks compete for the same
parameters (the paper's "Double Dilemma"):

* **report decoder** -- backbone-specific; trained with next-token negative log-likelihood
  (``L_nll``);
* **classification head** -- 14 CheXpert observations x 4 classes (blank / positive / negative /
  uncertain) from the pooled image features (``L_cls``);
* **alignment head** -- pooled image features and a bag-of-words report embedding (sharing the
  decoder's token embedding) projected to a joint space (``L_align``).

A backbone subclasses :class:`ReportModel` and implements two methods, the contract that
``examples.rrg.training.tasks`` and ``examples.rrg.models.decode`` rely on:

* ``decoder_context(image_tokens, pooled)`` -- everything the decoder reads besides the tokens,
  as a pytree of arrays with a leading batch axis (computed once per image, repeated per beam);
* ``decode(tokens, context)`` -- next-token logits ``(B, T, vocab)``, causal in ``T``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from examples.rrg.models.config import ModelConfig
from examples.rrg.models.encoders import ImageEncoder


class ReportModel(nnx.Module):
  """Image encoder, token embedding, LM output layer, classification and alignment heads."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d = cfg.d_model
    self.encoder = ImageEncoder(cfg, rngs=rngs)
    self.token_embed = nnx.Embed(cfg.vocab_size, d, rngs=rngs)
    self.token_pos = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (cfg.max_len, d)))
    self.norm_out = nnx.LayerNorm(d, rngs=rngs)
    self.lm_head = nnx.Linear(d, cfg.vocab_size, rngs=rngs)
    # Classification: pooled image features -> 14 x 4 logits.
    self.cls_hidden = nnx.Linear(d, d, rngs=rngs)
    self.cls_out = nnx.Linear(d, cfg.num_observations * cfg.num_classes, rngs=rngs)
    # Alignment: both sides projected to the joint space of width embed_dim.
    self.image_proj = nnx.Linear(d, cfg.embed_dim, rngs=rngs)
    self.text_hidden = nnx.Linear(d, d, rngs=rngs)
    self.text_proj = nnx.Linear(d, cfg.embed_dim, rngs=rngs)

  # -- shared trunks and heads -----------------------------------------------------------------
  def encode_images(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns image tokens ``(B, S, D)`` and their mean, the pooled feature ``(B, D)``."""
    tokens = self.encoder(images)
    return tokens, tokens.mean(axis=1)

  def embed_tokens(self, tokens: jax.Array) -> jax.Array:
    """Token plus position embedding ``(B, T, D)``; checks ``T <= max_len``."""
    t = tokens.shape[1]
    if t > self.cfg.max_len:
      raise ValueError(f"tokens has length {t} > max_len={self.cfg.max_len}")
    return self.token_embed(tokens) + self.token_pos[None, :t]

  def logits(self, x: jax.Array) -> jax.Array:
    """Decoder states ``(B, T, D)`` -> next-token logits ``(B, T, vocab)``."""
    return self.lm_head(self.norm_out(x))

  def classify(self, pooled: jax.Array) -> jax.Array:
    """Observation logits ``(B, num_observations, num_classes)``."""
    logits = self.cls_out(nnx.gelu(self.cls_hidden(pooled)))
    return logits.reshape(pooled.shape[0], self.cfg.num_observations, self.cfg.num_classes)

  def image_embedding(self, pooled: jax.Array) -> jax.Array:
    """Unit-norm image embedding ``(B, embed_dim)`` for the alignment task."""
    return l2_normalize(self.image_proj(pooled))

  def text_embedding(self, tokens: jax.Array, pad_id: int = 0) -> jax.Array:
    """Unit-norm report embedding ``(B, embed_dim)``: masked mean of token embeddings, MLP."""
    mask = (tokens != pad_id).astype(jnp.float32)[..., None]
    bag = (self.token_embed(tokens) * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
    return l2_normalize(self.text_proj(nnx.gelu(self.text_hidden(bag))))

  # -- the backbone's part -----------------------------------------------------------------
  def decoder_context(self, image_tokens: jax.Array, pooled: jax.Array) -> Any:
    """What ``decode`` reads besides the tokens; a pytree with a leading batch axis."""
    raise NotImplementedError

  def decode(self, tokens: jax.Array, context: Any) -> jax.Array:
    """Next-token logits ``(B, T, vocab)`` for input tokens ``(B, T)``; causal in ``T``."""
    raise NotImplementedError

  def __call__(self, images: jax.Array, tokens: jax.Array, pad_id: int = 0) -> dict:
    """All outputs for a batch; ``tokens`` is the full ``[BOS ... EOS pad]`` sequence.

    Returns a dict with ``logits`` ``(B, T-1, vocab)`` predicting ``tokens[:, 1:]`` from
    ``tokens[:, :-1]``, ``cls_logits`` ``(B, 14, 4)``, ``image_emb`` and ``text_emb``
    ``(B, embed_dim)``.
    """
    image_tokens, pooled = self.encode_images(images)
    context = self.decoder_context(image_tokens, pooled)
    return {
        "logits": self.decode(tokens[:, :-1], context),
        "cls_logits": self.classify(pooled),
        "image_emb": self.image_embedding(pooled),
        "text_emb": self.text_embedding(tokens, pad_id),
    }


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))
