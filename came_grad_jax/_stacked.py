"""Checks shared by the transformations that work on the stacked gradients themselves
(not only on their Gram matrix): TrimmedMean, ExcessMTL, GradNorm."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax._gram import num_tasks_of

Array = jax.Array


def checked_num_tasks(updates, k_static: int | None, name: str) -> int:
  """K of the stacked ``updates``, checked against the K the transformation was built for.

  Raises:
    ValueError: naming ``name`` when the leading axes disagree with ``k_static``.
  """
  k = num_tasks_of(updates)
  if k_static is not None and k != k_static:
    raise ValueError(f"updates have a leading task axis of {k} but {name} was built for "
                     f"K = {k_static} tasks (from task_weights or num_tasks)")
  return k


def weights_or_ones(task_weights, k: int) -> Array:
  """The task weights as an array, all ones when None."""
  return jnp.ones((k,)) if task_weights is None else jnp.asarray(task_weights)


def all_finite(tree) -> Array:
  """Whether every entry of every leaf is finite (one boolean)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def per_task_sum(tree) -> Array:
  """``sum`` over all but the leading (task) axis of every leaf, added up: (K,)."""
  return sum(jnp.sum(x.reshape(x.shape[0], -1), axis=1) for x in jax.tree.leaves(tree))
