"""Stacked task gradients: validation, Gram matrix and weighted combination.

"Stacked task gradients" are a pytree shaped like the params whose every leaf
has a leading task axis K (what :func:`came_grad_jax.value_and_task_grads`
returns). The Gram matrix is summed leaf by leaf, contracting every axis but
the task axis, so a sharded leaf contributes a K x K partial sum and the
cross-device reduction is an all-reduce of K x K numbers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from came_grad_jax.solvers import compute_dtype

Array = jax.Array
PyTree = Any


def num_tasks_of(stacked: PyTree, *, name: str = "updates") -> int:
  """Validate stacked task gradients and return K, their common leading axis.

  Raises:
    ValueError: if there are no leaves, a leaf has no task axis, or leading axes differ.
    TypeError: if a leaf is not floating point.
  """
  leaves, _ = jax.tree_util.tree_flatten_with_path(stacked)
  if not leaves:
    raise ValueError(f"{name} has no array leaves")
  sizes = {}
  for path, leaf in leaves:
    where = jax.tree_util.keystr(path) or "<root>"
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise TypeError(
          f"{name}{where} must be floating point task gradients, got dtype "
          f"{jnp.result_type(leaf)}")
    if jnp.ndim(leaf) < 1:
      raise ValueError(
          f"{name}{where} is a scalar: stacked task gradients need a leading "
          "task axis K on every leaf (use value_and_task_grads)")
    sizes.setdefault(jnp.shape(leaf)[0], where)
  if len(sizes) > 1:
    detail = ", ".join(f"{w}: {k}" for k, w in sizes.items())
    raise ValueError(
        f"{name} leaves must share the leading task axis K, got different sizes ({detail})")
  return next(iter(sizes))


def _leaf_gram(leaf: Array) -> Array:
  """``X X^T`` for one leaf, contracting every axis but the first, float32 or wider."""
  axes = tuple(range(1, leaf.ndim))
  return jnp.tensordot(leaf, leaf, axes=(axes, axes),
                       preferred_element_type=compute_dtype(leaf.dtype)).astype(
                           compute_dtype(leaf.dtype))


def gram(stacked: PyTree, task_weights: Array | None = None) -> Array:
  """The Gram matrix ``M_ij = <h_i, h_j>`` of the task-weighted gradients.

  ``h_k = w_k g_k``; ``M = (w w^T) * sum_leaves G_leaf G_leaf^T``, accumulated in
  float32 or wider whatever the gradients' dtype.

  Args:
    stacked: stacked task gradients (leading axis K on every leaf).
    task_weights: ``w`` (K,), or None for all ones.

  Returns:
    ``M``, (K, K).

  Example:
    >>> g = {"w": jnp.array([[1.0, 0.0], [1.0, 1.0]])}
    >>> gram(g)
    Array([[1., 1.],
           [1., 2.]], dtype=float32)
  """
  leaves = jax.tree_util.tree_leaves(stacked)
  dtype = compute_dtype(jnp.result_type(*leaves))
  total = sum(_leaf_gram(leaf).astype(dtype) for leaf in leaves)
  if task_weights is None:
    return total
  w = jnp.asarray(task_weights, dtype)
  return total * jnp.outer(w, w)


def combine(stacked: PyTree, coeffs: Array) -> PyTree:
  """``sum_k coeffs_k g_k`` leaf by leaf, in each leaf's own dtype.

  The sum is formed in float32 or wider and cast back, so bf16 gradients give a
  bf16 update. Fold task weights into ``coeffs`` (``coeffs = c * w``).

  Example:
    >>> combine({"w": jnp.array([[1.0, 0.0], [1.0, 1.0]])}, jnp.array([2.0, 1.0]))
    {'w': Array([3., 1.], dtype=float32)}
  """

  def one(leaf):
    dtype = compute_dtype(leaf.dtype)
    out = jnp.tensordot(coeffs.astype(dtype), leaf, axes=1,
                        preferred_element_type=dtype)
    return out.astype(leaf.dtype)

  return jax.tree.map(one, stacked)
