"""R2Gen-style backbone (Chen et al., EMNLP 2020): relational memory and memory-driven
conditional layer norm (MCLN).

* A transformer encoder (``visual_layers`` self-attention blocks) refines the image tokens.
* A **relational memory** of ``rm_num_slots`` slots is updated once per report token: the slots
  attend to themselves and to the token, pass an MLP, and an input and a forget gate (computed
  from the token and the previous memory) mix the result with the previous memory, as in an
  LSTM. The memory after token ``t`` depends on tokens ``<= t`` only, so decoding stays causal.
* Every normalisation of the decoder blocks is a **conditional layer norm**: its scale and
  shift are a learned base plus MLP(memory_t), so the memory steers every sub-layer.

Sizes are ours, kept small for CPUs: memory slots of width ``rm_dim`` (R2Gen: 3 slots of 512),
and the MCLN MLP shares one hidden layer between the scale and the shift.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from examples.rrg.models.base import ReportModel
from examples.rrg.models.config import ModelConfig
from examples.rrg.models.layers import TransformerBlock


class RelationalMemory(nnx.Module):
  """Memory ``M_t (slots, rm_dim)`` updated by each input ``x_t``; returns every ``M_t`` flat.

  With ``y = M + Attn(M, [M; x_t])`` and ``z = y + MLP(y)``:
  ``M_t = sigmoid(i) * tanh(z) + sigmoid(f) * M``, ``[i, f] = W x_t + U tanh(M)``,
  where ``M = M_{t-1}`` and ``M_0`` is the identity padded with zeros.
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    m = cfg.rm_dim
    self.num_slots, self.dim = cfg.rm_num_slots, m
    self.input_proj = nnx.Linear(cfg.d_model, m, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
        num_heads=cfg.rm_num_heads, in_features=m, decode=False, deterministic=True,
        keep_rngs=False, rngs=rngs)
    self.mlp1 = nnx.Linear(m, m, rngs=rngs)
    self.mlp2 = nnx.Linear(m, m, rngs=rngs)
    self.gate_input = nnx.Linear(m, 2 * m, rngs=rngs)  # W
    self.gate_memory = nnx.Linear(m, 2 * m, rngs=rngs)  # U

  def initial_memory(self, batch: int) -> jax.Array:
    """``(B, slots, rm_dim)``: identity rows, zero padded (or cut) to ``rm_dim``."""
    return jnp.broadcast_to(jnp.eye(self.num_slots, self.dim), (batch, self.num_slots, self.dim))

  def step(self, memory: jax.Array, x: jax.Array) -> jax.Array:
    """One update: ``memory (B, S, m)`` and projected input ``x (B, m)`` -> next memory."""
    keys = jnp.concatenate([memory, x[:, None]], axis=1)
    y = memory + self.attn(memory, keys)
    z = y + nnx.relu(self.mlp2(nnx.relu(self.mlp1(y))))
    gates = self.gate_input(x)[:, None] + self.gate_memory(jnp.tanh(memory))
    input_gate, forget_gate = jnp.split(jax.nn.sigmoid(gates), 2, axis=-1)
    return input_gate * jnp.tanh(z) + forget_gate * memory

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """``inputs (B, T, d_model)`` -> memories ``(B, T, slots * rm_dim)``, ``M_1 ... M_T``."""
    b = inputs.shape[0]
    xs = jnp.swapaxes(self.input_proj(inputs), 0, 1)  # (T, B, m)

    def body(memory, x):
      memory = self.step(memory, x)
      return memory, memory.reshape(b, -1)

    _, memories = jax.lax.scan(body, self.initial_memory(b).astype(xs.dtype), xs)
    return jnp.swapaxes(memories, 0, 1)


class ConditionalLayerNorm(nnx.Module):
  """Layer norm whose scale and shift are ``base + MLP(memory)`` (R2Gen's MCLN)."""

  def __init__(self, width: int, *, cfg: ModelConfig, rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(width, use_scale=False, use_bias=False, rngs=rngs)
    self.scale = nnx.Param(jnp.ones((width,)))
    self.bias = nnx.Param(jnp.zeros((width,)))
    self.hidden = nnx.Linear(cfg.rm_num_slots * cfg.rm_dim, cfg.rm_dim, rngs=rngs)
    small = nnx.initializers.normal(0.02)
    self.delta_scale = nnx.Linear(cfg.rm_dim, width, kernel_init=small, rngs=rngs)
    self.delta_bias = nnx.Linear(cfg.rm_dim, width, kernel_init=small, rngs=rngs)

  def __call__(self, x: jax.Array, memory: jax.Array) -> jax.Array:
    """``x (B, T, width)`` normalised with the scale and shift of ``memory (B, T, S * m)``."""
    h = nnx.relu(self.hidden(memory))
    scale = self.scale[...] + self.delta_scale(h)
    bias = self.bias[...] + self.delta_bias(h)
    return self.norm(x) * scale + bias


class R2Gen(ReportModel):
  """Shared encoder and heads + visual transformer encoder + memory-conditioned decoder.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> cfg = ModelConfig(vocab_size=16, max_len=8, image_size=16, channels=(4, 8),
    ...                   d_model=16, num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8,
    ...                   rm_dim=8)
    >>> model = R2Gen(cfg, rngs=nnx.Rngs(0))
    >>> model.memory(jnp.zeros((2, 5, 16))).shape  # (B, T, slots * rm_dim)
    (2, 5, 24)
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg, rngs=rngs)
    self.visual_blocks = nnx.List([
        TransformerBlock(cfg, cross=False, rngs=rngs) for _ in range(cfg.visual_layers)])
    self.visual_norm = nnx.LayerNorm(cfg.d_model, rngs=rngs)
    self.memory = RelationalMemory(cfg, rngs=rngs)
    mcln = functools.partial(ConditionalLayerNorm, cfg=cfg)
    self.blocks = nnx.List([
        TransformerBlock(cfg, norm=mcln, rngs=rngs) for _ in range(cfg.num_layers)])

  def decoder_context(self, image_tokens: jax.Array, pooled: jax.Array) -> jax.Array:
    """The image tokens after the visual transformer encoder ``(B, S, D)``."""
    del pooled
    x = image_tokens
    for block in self.visual_blocks:
      x = block(x)
    return self.visual_norm(x)

  def decode(self, tokens: jax.Array, context: jax.Array) -> jax.Array:
    """Next-token logits ``(B, T, vocab)``; the memory after token ``t`` conditions position t."""
    x = self.embed_tokens(tokens)
    memory = self.memory(x)
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, context, mask, cond=(memory,))
    return self.logits(x)
