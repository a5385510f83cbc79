"""The RRG tasks and their losses, one scalar each, for every backbone.

* ``nll``   -- report negative log-likelihood per non-pad target token (``L_nll``);
* ``cls``   -- cross-entropy of each of the 14 observations over {blank, positive, negative,
  uncertain}, averaged over observations and examples (``L_cls``);
* ``align`` -- symmetric InfoNCE between image and report embeddings (``L_align``); reports
  that are word-for-word identical within a batch count as positives of each other.

:func:`task_loss_terms` is the one contract between the models and the train step: it needs
only the methods every backbone of :mod:`examples.rrg.models` has (``encode_images``,
``decoder_context``, ``decode``, ``classify``, ``image_embedding``, ``text_embedding``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from examples.rrg.data.tokenizer import Tokenizer
from examples.rrg.models import ReportModel

TASKS = ("nll", "cls", "align")

PAD_ID, BOS_ID, EOS_ID = Tokenizer.pad_id, Tokenizer.bos_id, Tokenizer.eos_id


def nll_loss(logits: jax.Array, targets: jax.Array, pad_id: int = PAD_ID) -> jax.Array:
  """Mean next-token NLL over non-pad targets. ``logits (B, T, V)``, ``targets (B, T)``."""
  mask = (targets != pad_id).astype(jnp.float32)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy per observation, averaged. ``logits (B, 14, 4)``, ``labels (B, 14)``."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return ce.mean()


def alignment_loss(image_emb: jax.Array, text_emb: jax.Array, tokens: jax.Array,
                   temperature: float) -> jax.Array:
  """Symmetric InfoNCE between unit-norm embeddings ``(B, E)``.

  The target distribution of image ``i`` is uniform over the reports in the batch that are
  token-for-token identical to report ``i`` (templated normal reports repeat), so identical
  reports are never pushed apart.
  """
  sim = image_emb @ text_emb.T / temperature  # (B, B)
  same = jnp.all(tokens[:, None, :] == tokens[None, :, :], axis=-1).astype(jnp.float32)
  targets = same / same.sum(axis=1, keepdims=True)  # symmetric, so its transpose is the same
  i2t = optax.softmax_cross_entropy(sim, targets)
  t2i = optax.softmax_cross_entropy(sim.T, targets)
  return 0.5 * (i2t.mean() + t2i.mean())


def task_loss_terms(model: ReportModel, batch: dict, tasks: Sequence[str] = TASKS, *,
                    temperature: float = 0.1) -> tuple[jax.Array, ...]:
  """The K scalar losses ``(L_task for task in tasks)`` for one batch, as a tuple.

  ``batch`` holds ``images (B, V, H, W, 1)``, ``tokens (B, T)`` and ``labels (B, 14)``;
  ``model`` is any backbone of :data:`examples.rrg.models.BACKBONES`. Kept separate (not
  stacked) so that a per-task backward pass (``value_and_task_grads(..., vectorize=False)``)
  skips what its loss does not use: the classification and alignment losses never reach the
  decoder (the report loss of ``promptmrg`` does reach the classifier, through its prompts).

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> from examples.rrg import models
    >>> cfg = models.ModelConfig(vocab_size=16, max_len=8, image_size=16, channels=(4, 8),
    ...                          d_model=16, num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)
    >>> model = models.build_model(cfg, "encoder_decoder", rngs=nnx.Rngs(0))
    >>> batch = {"images": jnp.zeros((2, 1, 16, 16, 1)), "tokens": jnp.ones((2, 8), jnp.int32),
    ...          "labels": jnp.zeros((2, 14), jnp.int32)}
    >>> len(task_loss_terms(model, batch, ("nll", "cls")))
    2
  """
  unknown = [t for t in tasks if t not in TASKS]
  if unknown or not tasks:
    raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tuple(tasks)}")
  tokens = batch["tokens"]
  image_tokens, pooled = model.encode_images(batch["images"])
  losses = []
  for task in tasks:
    if task == "nll":
      context = model.decoder_context(image_tokens, pooled)
      losses.append(nll_loss(model.decode(tokens[:, :-1], context), tokens[:, 1:]))
    elif task == "cls":
      losses.append(classification_loss(model.classify(pooled), batch["labels"]))
    else:
      image_emb = model.image_embedding(pooled)
      text_emb = model.text_embedding(tokens, PAD_ID)
      losses.append(alignment_loss(image_emb, text_emb, tokens, temperature))
  return tuple(losses)


def task_losses(model: ReportModel, batch: dict, tasks: Sequence[str] = TASKS, *,
                temperature: float = 0.1) -> jax.Array:
  """:func:`task_loss_terms` stacked: the vector of shape ``(K,)``."""
  return jnp.stack(task_loss_terms(model, batch, tasks, temperature=temperature))
