"""A self-contained 3-4M parameter multi-task transformer for the end-to-end benchmark.

Radiology-report-generation shaped (the paper's setting), on random data:
an image encoder (patch features -> transformer encoder) shared by three
task heads --

* report: a causal transformer decoder over ``[image tokens; report tokens]``
  (prefix LM), next-token negative log-likelihood;
* classification: 14 observations x 4 classes from the pooled image tokens;
* alignment: symmetric InfoNCE between the pooled image tokens and the mean
  of the report's token embeddings (the decoder's embedding, so two heads
  share it).

``encode`` and ``heads`` are exposed separately for the representation-Gram
lean path; ``losses`` is their composition.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@dataclasses.dataclass(frozen=True)
class Config:
  vocab_size: int = 2048
  text_len: int = 32
  num_patches: int = 49
  patch_dim: int = 96
  d_model: int = 256
  num_heads: int = 4
  encoder_layers: int = 2
  decoder_layers: int = 2
  mlp_ratio: int = 4
  num_observations: int = 14
  num_classes: int = 4
  batch_size: int = 8


TINY = Config(vocab_size=64, text_len=8, num_patches=4, patch_dim=8, d_model=16, num_heads=2,
              encoder_layers=1, decoder_layers=1, batch_size=2)


class Block(nnx.Module):
  """Pre-LN transformer block (self-attention + MLP)."""

  def __init__(self, cfg: Config, rngs: nnx.Rngs):
    d = cfg.d_model
    self.norm1 = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=cfg.num_heads, in_features=d, decode=False,
                                       rngs=rngs)
    self.norm2 = nnx.LayerNorm(d, rngs=rngs)
    self.up = nnx.Linear(d, cfg.mlp_ratio * d, rngs=rngs)
    self.down = nnx.Linear(cfg.mlp_ratio * d, d, rngs=rngs)

  def __call__(self, x, mask=None):
    x = x + self.attn(self.norm1(x), mask=mask)
    return x + self.down(jax.nn.gelu(self.up(self.norm2(x))))


class MultiTaskModel(nnx.Module):

  def __init__(self, cfg: Config, rngs: nnx.Rngs):
    self.cfg = cfg
    d = cfg.d_model
    self.patch_proj = nnx.Linear(cfg.patch_dim, d, rngs=rngs)
    self.patch_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.num_patches, d)))
    self.encoder = nnx.List([Block(cfg, rngs) for _ in range(cfg.encoder_layers)])
    self.enc_norm = nnx.LayerNorm(d, rngs=rngs)
    self.embed = nnx.Embed(cfg.vocab_size, d, rngs=rngs)
    self.text_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.text_len, d)))
    self.decoder = nnx.List([Block(cfg, rngs) for _ in range(cfg.decoder_layers)])
    self.dec_norm = nnx.LayerNorm(d, rngs=rngs)
    self.cls_head = nnx.Linear(d, cfg.num_observations * cfg.num_classes, rngs=rngs)
    self.img_align = nnx.Linear(d, 128, rngs=rngs)
    self.txt_align = nnx.Linear(d, 128, rngs=rngs)

  def encode(self, patches):
    x = self.patch_proj(patches) + self.patch_pos[...]
    for block in self.encoder:
      x = block(x)
    return self.enc_norm(x)

  def heads(self, z, tokens, labels):
    cfg = self.cfg
    # Report: prefix LM over [image tokens; report tokens], causal on the report.
    t = self.embed(tokens) + self.text_pos[...]
    x = jnp.concatenate([z, t], axis=1)
    n, s = cfg.num_patches, cfg.num_patches + cfg.text_len
    causal = jnp.tril(jnp.ones((s, s), bool)) | (jnp.arange(s)[None, :] < n)
    for block in self.decoder:
      x = block(x, mask=causal[None, None])
    logits = self.embed.attend(self.dec_norm(x[:, n:-1]))
    nll = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], -1))
    # Classification: 14 x 4-way from the pooled image tokens.
    pooled = jnp.mean(z, axis=1)
    cls_logits = self.cls_head(pooled).reshape(-1, cfg.num_observations, cfg.num_classes)
    cls = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(cls_logits), labels[..., None], -1))
    # Alignment: symmetric InfoNCE, image vs mean report embedding.
    img = self.img_align(pooled)
    txt = self.txt_align(jnp.mean(self.embed(tokens), axis=1))
    img = img / jnp.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / jnp.linalg.norm(txt, axis=-1, keepdims=True)
    sim = img @ txt.T / 0.07
    diag = jnp.arange(sim.shape[0])
    align = 0.5 * (-jnp.mean(jax.nn.log_softmax(sim, 0)[diag, diag])
                   - jnp.mean(jax.nn.log_softmax(sim, 1)[diag, diag]))
    # A tuple of K scalars: a per-task backward pass then skips the other heads.
    return nll, cls, align


def build(cfg: Config = Config(), seed: int = 0):
  """``(graphdef, params)`` of the model, and functions of ``(params, batch)``."""
  model = MultiTaskModel(cfg, nnx.Rngs(seed))
  graphdef, params = nnx.split(model, nnx.Param)

  def encode(p, batch):
    return nnx.merge(graphdef, p).encode(batch["patches"])

  def heads(p, z, batch):
    return nnx.merge(graphdef, p).heads(z, batch["tokens"], batch["labels"])

  def losses(p, batch):
    return heads(p, encode(p, batch), batch)

  return params, encode, heads, losses


def make_batch(cfg: Config = Config(), seed: int = 0) -> dict[str, jax.Array]:
  rng = np.random.default_rng(seed)
  b = cfg.batch_size
  return {
      "patches": jnp.asarray(rng.standard_normal((b, cfg.num_patches, cfg.patch_dim)), jnp.float32),
      "tokens": jnp.asarray(rng.integers(0, cfg.vocab_size, (b, cfg.text_len))),
      "labels": jnp.asarray(rng.integers(0, cfg.num_classes, (b, cfg.num_observations))),
  }


def num_params(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
