"""GradDrop (Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with
Gradient Sign Dropout", NeurIPS 2020).

GradDrop decides coordinate by coordinate, so it needs the gradients' signs and
not only their Gram matrix: it is a transformation of its own. At every
coordinate, with ``h_k = w_k g_k``, the positive sign purity is::

    P = 1/2 (1 + sum_k h_k / sum_k |h_k|)      (1/2 where every h_k is 0),

a uniform ``U`` is drawn, and only the positive values are kept where
``P > U``, only the negative ones where ``P < U``::

    d = sum_k (l + (1 - l) m_k) h_k,   m_k = [P > U and h_k > 0] or [P < U and h_k < 0],

``l`` the leak (0: pure GradDrop; 1: linear scalarization). The state carries
the PRNG key of the uniforms.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._gram import num_tasks_of
from came_grad_jax._numerics import compute_dtype
from came_grad_jax._random import as_key, fresh_key
from came_grad_jax._stacked import all_finite
from came_grad_jax._transform import resolve_num_tasks

Array = jax.Array


class GradDropState(NamedTuple):
  """State of :func:`graddrop`."""

  key: Array
  """Typed PRNG key (``jax.random.key``) of the next step's uniforms."""


def drop_signs(task_grads: Array, uniform: Array, leak: jax.typing.ArrayLike = 0.0) -> Array:
  """GradDrop on one leaf: ``sum_k (l + (1 - l) m_k) h_k`` for given uniforms.

  Args:
    task_grads: ``h`` (K, ...) the task-weighted gradients of one leaf.
    uniform: ``U`` (...) in [0, 1), one per coordinate.
    leak: ``l`` in [0, 1].

  Returns:
    The combined leaf, shape ``task_grads.shape[1:]``.

  Example:
    >>> h = jnp.array([[1.0, 2.0], [-3.0, 2.0]])
    >>> drop_signs(h, jnp.array([0.5, 0.5]))  # P = (1/4, 1): keep -3, then 2 + 2
    Array([-3.,  4.], dtype=float32)
  """
  total = jnp.sum(jnp.abs(task_grads), axis=0)
  purity = 0.5 * (1.0 + jnp.sum(task_grads, axis=0) / jnp.where(total > 0, total, 1.0))
  keep = (((purity > uniform) & (task_grads > 0))
          | ((purity < uniform) & (task_grads < 0)))
  out = jnp.sum((leak + (1.0 - leak) * keep) * task_grads, axis=0)
  # A non-finite gradient must reach the update (for optax.apply_if_finite) even
  # where its sign was dropped: there the plain sum carries the NaN or inf.
  total_sum = jnp.sum(task_grads, axis=0)
  return jnp.where(jnp.all(jnp.isfinite(task_grads), axis=0), out, total_sum)


def graddrop(key: jax.Array | int = 0, task_weights: jax.typing.ArrayLike | None = None, *,
             num_tasks: int | None = None, leak: float = 0.0) -> optax.GradientTransformation:
  """GradDrop as an Optax transformation of stacked task gradients.

  Args:
    key: the PRNG key of the initial state (``jax.random.key``) or an int seed.
    task_weights: ``w`` (K,), finite and >= 0; None means all ones.
    num_tasks: K, optional (read from the updates); checked against them when given.
    leak: ``l`` in [0, 1], the share of every gradient that is never dropped.

  Returns:
    An ``optax.GradientTransformation``: stacked task gradients (leading axis K
    on every leaf) in, a params-shaped update out (in each leaf's dtype).

  Example:
    >>> tx = optax.chain(graddrop(key=0), optax.sgd(0.1))
  """
  key = as_key(key)
  hyperparams.check_scalar("leak", leak, lower=0.0, upper=1.0)
  task_weights = hyperparams.check_task_weights(task_weights)
  k_static = resolve_num_tasks(task_weights, num_tasks)

  def init_fn(params):
    del params
    return GradDropState(fresh_key(key))

  def update_fn(updates, state, params=None):
    del params
    k = num_tasks_of(updates)
    if k_static is not None and k != k_static:
      raise ValueError(f"updates have a leading task axis of {k} but graddrop was built for "
                       f"K = {k_static} tasks")
    hyperparams.check_task_weights(task_weights, k)
    weights = jnp.ones((k,)) if task_weights is None else jnp.asarray(task_weights)
    key_, sub = jax.random.split(state.key)
    leaves, treedef = jax.tree.flatten(updates)
    keys = jax.random.split(sub, len(leaves))

    def one(leaf, leaf_key):
      dtype = compute_dtype(leaf.dtype)
      h = leaf.astype(dtype) * weights.astype(dtype).reshape((k,) + (1,) * (leaf.ndim - 1))
      uniform = jax.random.uniform(leaf_key, leaf.shape[1:], dtype)
      return drop_signs(h, uniform, leak).astype(leaf.dtype)

    out = jax.tree.unflatten(treedef, [one(x, kk) for x, kk in zip(leaves, keys)])
    # A non-finite step (NaN or inf reaches the update) leaves the key where it was.
    return out, GradDropState(jnp.where(all_finite(out), key_, state.key))

  return optax.GradientTransformation(init_fn, update_fn)
