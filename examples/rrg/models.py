"""Multi-task radiology report generation model (Flax NNX).

One image encoder shared by three heads, which is what makes the tasks compete for the same
parameters (the paper's "Double Dilemma"):

* **report decoder** -- a causal transformer that cross-attends to the image tokens and is
  trained with next-token negative log-likelihood (``L_nll``);
* **classification head** -- 14 CheXpert observations x 4 classes (blank / positive / negative /
  uncertain) predicted from the pooled image features, one cross-entropy per observation as in
  PromptMRG-style trainers (``L_cls``);
* **alignment head** -- pooled image features and a bag-of-words report embedding (which shares
  the decoder's token embedding) projected to a joint space and trained with a symmetric InfoNCE
  loss (``L_align``).

Images arrive as ``(B, V, H, W, 1)``: ``V`` views of one study (1 for MIMIC-CXR and the synthetic
data, 2 for IU X-Ray). Every view goes through the same CNN; a learned view embedding tells the
views apart and the decoder attends to the tokens of all views at once.

The loss functions live in ``train.py``; this module only maps inputs to outputs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes of :class:`ReportGenerator`. The defaults give about 0.8M parameters."""

  vocab_size: int = 256
  max_len: int = 48  # longest token sequence, BOS and EOS included
  image_size: int = 64
  num_views: int = 1
  channels: tuple[int, ...] = (16, 32, 64, 64)  # CNN widths, each stage halves H and W
  d_model: int = 128
  num_heads: int = 4
  num_layers: int = 2
  mlp_dim: int = 256
  embed_dim: int = 64  # joint image-text space of the alignment task
  num_observations: int = 14
  num_classes: int = 4  # blank, positive, negative, uncertain

  @property
  def grid_size(self) -> int:
    """Side of the feature map the CNN leaves: ``image_size / 2**len(channels)``."""
    return self.image_size // 2 ** len(self.channels)

  def __post_init__(self):
    if self.image_size % 2 ** len(self.channels):
      raise ValueError(
          f"image_size={self.image_size} must be divisible by 2**len(channels)="
          f"{2 ** len(self.channels)}")
    if self.d_model % self.num_heads:
      raise ValueError(
          f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}")
    if self.vocab_size < 4:
      raise ValueError(f"vocab_size must be >= 4 (pad, bos, eos, unk), got {self.vocab_size}")


class ImageEncoder(nnx.Module):
  """Shared CNN over views -> ``V * grid**2`` image tokens of width ``d_model``."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    widths = (1,) + tuple(cfg.channels)
    self.convs = nnx.List([
        nnx.Conv(w_in, w_out, (3, 3), strides=2, rngs=rngs)
        for w_in, w_out in zip(widths[:-1], widths[1:])
    ])
    self.proj = nnx.Linear(widths[-1], cfg.d_model, rngs=rngs)
    num_patches = cfg.grid_size**2
    init = nnx.initializers.normal(0.02)
    self.patch_pos = nnx.Param(init(rngs.params(), (num_patches, cfg.d_model)))
    self.view_embed = nnx.Param(init(rngs.params(), (cfg.num_views, cfg.d_model)))
    self.norm = nnx.LayerNorm(cfg.d_model, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    """``(B, V, H, W, 1)`` in [0, 1] -> image tokens ``(B, V * grid**2, d_model)``."""
    b, v, h, w, c = images.shape
    x = images.reshape(b * v, h, w, c) * 2.0 - 1.0
    for conv in self.convs:
      x = nnx.relu(conv(x))
    x = self.proj(x.reshape(b, v, -1, x.shape[-1]))  # (B, V, P, D)
    x = x + self.patch_pos[None, None] + self.view_embed[None, :v, None]
    return self.norm(x.reshape(b, -1, x.shape[-1]))


class DecoderBlock(nnx.Module):
  """Pre-LayerNorm block: causal self-attention, cross-attention to the image, MLP."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d = cfg.d_model

    def attention():
      return nnx.MultiHeadAttention(
          num_heads=cfg.num_heads, in_features=d, decode=False, deterministic=True,
          keep_rngs=False, rngs=rngs)

    self.norm_self = nnx.LayerNorm(d, rngs=rngs)
    self.self_attn = attention()
    self.norm_cross = nnx.LayerNorm(d, rngs=rngs)
    self.cross_attn = attention()
    self.norm_mlp = nnx.LayerNorm(d, rngs=rngs)
    self.mlp_in = nnx.Linear(d, cfg.mlp_dim, rngs=rngs)
    self.mlp_out = nnx.Linear(cfg.mlp_dim, d, rngs=rngs)

  def __call__(self, x: jax.Array, image_tokens: jax.Array, causal_mask: jax.Array):
    x = x + self.self_attn(self.norm_self(x), mask=causal_mask)
    x = x + self.cross_attn(self.norm_cross(x), image_tokens)
    return x + self.mlp_out(nnx.gelu(self.mlp_in(self.norm_mlp(x))))


class ReportGenerator(nnx.Module):
  """Image encoder + report decoder + classification and alignment heads."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d = cfg.d_model
    self.encoder = ImageEncoder(cfg, rngs=rngs)
    self.token_embed = nnx.Embed(cfg.vocab_size, d, rngs=rngs)
    self.token_pos = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (cfg.max_len, d)))
    self.blocks = nnx.List([DecoderBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.norm_out = nnx.LayerNorm(d, rngs=rngs)
    self.lm_head = nnx.Linear(d, cfg.vocab_size, rngs=rngs)
    # Classification: pooled image features -> 14 x 4 logits.
    self.cls_hidden = nnx.Linear(d, d, rngs=rngs)
    self.cls_out = nnx.Linear(d, cfg.num_observations * cfg.num_classes, rngs=rngs)
    # Alignment: both sides projected to the joint space of width embed_dim.
    self.image_proj = nnx.Linear(d, cfg.embed_dim, rngs=rngs)
    self.text_hidden = nnx.Linear(d, d, rngs=rngs)
    self.text_proj = nnx.Linear(d, cfg.embed_dim, rngs=rngs)

  # -- the three trunks ----------------------------------------------------------------------
  def encode_images(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns image tokens ``(B, S, D)`` and their mean, the pooled feature ``(B, D)``."""
    tokens = self.encoder(images)
    return tokens, tokens.mean(axis=1)

  def decode(self, tokens: jax.Array, image_tokens: jax.Array) -> jax.Array:
    """Next-token logits ``(B, T, vocab)`` for input tokens ``(B, T)``; causal in T."""
    t = tokens.shape[1]
    if t > self.cfg.max_len:
      raise ValueError(f"tokens has length {t} > max_len={self.cfg.max_len}")
    x = self.token_embed(tokens) + self.token_pos[None, :t]
    causal_mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, image_tokens, causal_mask)
    return self.lm_head(self.norm_out(x))

  def classify(self, pooled: jax.Array) -> jax.Array:
    """Observation logits ``(B, num_observations, num_classes)``."""
    logits = self.cls_out(nnx.gelu(self.cls_hidden(pooled)))
    return logits.reshape(pooled.shape[0], self.cfg.num_observations, self.cfg.num_classes)

  def image_embedding(self, pooled: jax.Array) -> jax.Array:
    """Unit-norm image embedding ``(B, embed_dim)`` for the alignment task."""
    return _l2_normalize(self.image_proj(pooled))

  def text_embedding(self, tokens: jax.Array, pad_id: int = 0) -> jax.Array:
    """Unit-norm report embedding ``(B, embed_dim)``: masked mean of token embeddings, MLP."""
    mask = (tokens != pad_id).astype(jnp.float32)[..., None]
    bag = (self.token_embed(tokens) * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
    return _l2_normalize(self.text_proj(nnx.gelu(self.text_hidden(bag))))

  def __call__(self, images: jax.Array, tokens: jax.Array, pad_id: int = 0) -> dict:
    """All outputs for a batch; ``tokens`` is the full ``[BOS ... EOS pad]`` sequence.

    Returns a dict with ``logits`` ``(B, T-1, vocab)`` predicting ``tokens[:, 1:]`` from
    ``tokens[:, :-1]``, ``cls_logits`` ``(B, 14, 4)``, ``image_emb`` and ``text_emb``
    ``(B, embed_dim)``.
    """
    image_tokens, pooled = self.encode_images(images)
    return {
        "logits": self.decode(tokens[:, :-1], image_tokens),
        "cls_logits": self.classify(pooled),
        "image_emb": self.image_embedding(pooled),
        "text_emb": self.text_embedding(tokens, pad_id),
    }


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def count_params(model: nnx.Module) -> int:
  """Number of scalars in the model's ``nnx.Param`` variables."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
