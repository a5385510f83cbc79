"""Checks shared by the transformations that work on the stacked gradients themselves
(not only on their Gram matrix): TrimmedMean, ExcessMTL, GradNorm."""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp

from came_grad_jax._gram import num_tasks_of
from came_grad_jax._transform import resolve_num_tasks

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
  parts = [jnp.sum(x.reshape(x.shape[0], -1), axis=1) for x in jax.tree.leaves(tree)]
  return functools.reduce(operator.add, parts)


def required_num_tasks(task_weights, num_tasks: int | None, name: str, holds: str) -> int:
  """K from ``task_weights`` or ``num_tasks``, for a method whose state is K-shaped.

  Raises:
    ValueError: naming the method (``name``) and what its state ``holds`` when K is unknown.
  """
  k = resolve_num_tasks(task_weights, num_tasks)
  if k is None:
    raise ValueError(f"{name} needs the number of tasks at construction (its state holds "
                     f"{holds}): pass task_weights (K weights) or num_tasks=K")
  return k


def skip_unless(ok: Array, out, new_state, state):
  """``(out, new_state)`` where ``ok``; else a NaN update (for ``optax.apply_if_finite``)
  and the old state, so that a bad step never poisons the state."""
  out = jax.tree.map(lambda x: jnp.where(ok, x, jnp.nan).astype(x.dtype), out)
  new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old).astype(old.dtype),
                           new_state, state)
  return out, new_state
