"""Report generation under ``jit``: greedy decoding and beam search, for every backbone.

Both work at fixed shapes: the decoder re-reads the whole ``max_len - 1`` token buffer at every
step (causal attention makes the not-yet-written positions irrelevant), the image context is
computed once (``model.decoder_context``), and the loop stops early once every sequence has
ended. Sequences are ``[BOS w1 ... EOS pad ...]`` of length ``max_len``; one that reaches
``max_len`` without EOS is returned truncated.

Beam search keeps the ``beam_size`` best prefixes by summed log-probability; a beam that has
emitted EOS stays in the beam unchanged (its only continuation is pad, at no cost). At the end
the beams are ranked by ``log p(y) / len(y) ** length_penalty`` (``len`` counts the generated
tokens, EOS included): ``length_penalty = 0`` ranks by log-probability, as R2Gen does by
default; 1 divides by the length, the default of the Hugging Face ``generate`` that PromptMRG
calls. R2Gen and PromptMRG both decode with 3 beams. With one beam this is greedy decoding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from examples.rrg.models import ReportModel
from examples.rrg.training.tasks import BOS_ID, EOS_ID, PAD_ID

DEFAULT_BEAM_SIZE = 3


def _check_max_len(model: ReportModel, max_len: int) -> None:
  if not 2 <= max_len <= model.cfg.max_len + 1:
    raise ValueError(f"max_len must be in [2, model max_len + 1 = {model.cfg.max_len + 1}] "
                     f"(BOS plus at least one token), got {max_len}")


def _context(model: ReportModel, images: jax.Array):
  image_tokens, pooled = model.encode_images(images)
  return model.decoder_context(image_tokens, pooled)


@nnx.jit(static_argnames=("max_len",))
def greedy_decode(model: ReportModel, images: jax.Array, *, max_len: int) -> jax.Array:
  """Greedy report generation: ``(B, max_len)`` tokens ``[BOS w1 ... EOS pad ...]``."""
  _check_max_len(model, max_len)
  b = images.shape[0]
  context = _context(model, images)
  buf = jnp.full((b, max_len), PAD_ID, jnp.int32).at[:, 0].set(BOS_ID)
  done = jnp.zeros((b,), bool)

  def cond(carry):
    t, _, done = carry
    return (t < max_len - 1) & ~jnp.all(done)

  def body(carry):
    t, buf, done = carry
    logits = model.decode(buf[:, :-1], context)  # (B, max_len - 1, V)
    step_logits = jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False)
    nxt = jnp.argmax(step_logits, axis=-1).astype(jnp.int32)
    nxt = jnp.where(done, PAD_ID, nxt)
    buf = jax.lax.dynamic_update_index_in_dim(buf, nxt, t + 1, axis=1)
    return t + 1, buf, done | (nxt == EOS_ID)

  _, buf, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), buf, done))
  return buf


def _beam_search(model: ReportModel, images: jax.Array, max_len: int, beam_size: int,
                 length_penalty: jax.Array) -> tuple[jax.Array, jax.Array]:
  """All beams, best first: tokens ``(B, K, max_len)`` and ranking scores ``(B, K)``."""
  _check_max_len(model, max_len)
  if beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {beam_size}")
  b, k = images.shape[0], beam_size
  context = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), _context(model, images))
  seqs = jnp.full((b, k, max_len), PAD_ID, jnp.int32).at[:, :, 0].set(BOS_ID)
  # Only beam 0 is live at the start, so the first expansion yields k distinct prefixes.
  logp = jnp.full((b, k), -jnp.inf, jnp.float32).at[:, 0].set(0.0)
  finished = jnp.zeros((b, k), bool)
  lengths = jnp.zeros((b, k), jnp.int32)

  def cond(carry):
    t, _, logp, finished, _ = carry
    return (t < max_len - 1) & ~jnp.all(finished | jnp.isneginf(logp))

  def body(carry):
    t, seqs, logp, finished, lengths = carry
    logits = model.decode(seqs.reshape(b * k, max_len)[:, :-1], context)
    step = jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False)
    step = jax.nn.log_softmax(step.astype(jnp.float32), axis=-1).reshape(b, k, -1)
    vocab = step.shape[-1]
    pad_only = jnp.where(jnp.arange(vocab) == PAD_ID, 0.0, -jnp.inf)
    step = jnp.where(finished[..., None], pad_only, step)
    top, flat = jax.lax.top_k((logp[..., None] + step).reshape(b, k * vocab), k)
    parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
    seqs = jnp.take_along_axis(seqs, parent[..., None], axis=1)
    seqs = jax.lax.dynamic_update_index_in_dim(seqs, token, t + 1, axis=2)
    parent_finished = jnp.take_along_axis(finished, parent, axis=1)
    lengths = jnp.take_along_axis(lengths, parent, axis=1) + (~parent_finished).astype(jnp.int32)
    return t + 1, seqs, top, parent_finished | (token == EOS_ID), lengths

  _, seqs, logp, _, lengths = jax.lax.while_loop(
      cond, body, (jnp.int32(0), seqs, logp, finished, lengths))
  penalty = jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty
  scores = logp / penalty
  order = jnp.argsort(-scores, axis=1, stable=True)
  return (jnp.take_along_axis(seqs, order[..., None], axis=1),
          jnp.take_along_axis(scores, order, axis=1))


@nnx.jit(static_argnames=("max_len", "beam_size"))
def beam_search_nbest(model: ReportModel, images: jax.Array, *, max_len: int,
                      beam_size: int = DEFAULT_BEAM_SIZE,
                      length_penalty: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """The ``beam_size`` final beams, best first: tokens ``(B, K, max_len)``, scores ``(B, K)``.

  A score is ``log p(y | image) / len(y) ** length_penalty``; beams that never became valid
  (fewer candidates than beams) score ``-inf``.
  """
  return _beam_search(model, images, max_len, beam_size,
                      jnp.asarray(length_penalty, jnp.float32))


@nnx.jit(static_argnames=("max_len", "beam_size"))
def beam_search(model: ReportModel, images: jax.Array, *, max_len: int,
                beam_size: int = DEFAULT_BEAM_SIZE, length_penalty: float = 0.0) -> jax.Array:
  """Beam-search report generation: the best beam, ``(B, max_len)`` tokens.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> from examples.rrg import models
    >>> cfg = models.ModelConfig(vocab_size=16, max_len=8, image_size=16, channels=(4, 8),
    ...                          d_model=16, num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)
    >>> model = models.build_model(cfg, "encoder_decoder", rngs=nnx.Rngs(0))
    >>> beam_search(model, jnp.zeros((2, 1, 16, 16, 1)), max_len=8, beam_size=3).shape
    (2, 8)
  """
  seqs, _ = _beam_search(model, images, max_len, beam_size,
                         jnp.asarray(length_penalty, jnp.float32))
  return seqs[:, 0]


def generate(model: ReportModel, images: jax.Array, *, max_len: int, beam_size: int = 1,
             length_penalty: float = 0.0) -> jax.Array:
  """``(B, max_len)`` report tokens: greedy for ``beam_size == 1``, else beam search."""
  if beam_size == 1:
    return greedy_decode(model, images, max_len=max_len)
  return beam_search(model, images, max_len=max_len, beam_size=beam_size,
                     length_penalty=length_penalty)
