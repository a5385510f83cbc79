"""Coordinate-wise trimmed mean (Yin et al., "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018).

At every coordinate the ``t`` largest and ``t`` smallest of the K task-weighted
values ``h_k = w_k g_k`` are dropped and the remaining ``K - 2t`` averaged::

    d_j = 1 / (K - 2t) sum_{r = t+1}^{K-t} h_(r),j,

``h_(r),j`` the r-th smallest value at coordinate j. It needs the values, not
only their Gram matrix: a transformation of its own (``t = 0`` is the mean).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._numerics import compute_dtype
from came_grad_jax._stacked import all_finite, checked_num_tasks, weights_or_ones
from came_grad_jax._transform import resolve_num_tasks

Array = jax.Array


class TrimmedMeanState(NamedTuple):
  """State of :func:`trimmed_mean` (only the step count)."""

  count: Array


def trim_leaf(task_grads: Array, trim: int) -> Array:
  """The trimmed mean over the leading axis of one leaf; non-finite values propagate.

  Example:
    >>> trim_leaf(jnp.array([[1.0, -4.0], [2.0, 0.0], [9.0, 1.0]]), 1)  # the medians
    Array([2., 0.], dtype=float32)
  """
  k = task_grads.shape[0]
  kept = jnp.sort(task_grads, axis=0)[trim:k - trim]
  out = jnp.mean(kept, axis=0)
  # A NaN or inf must reach the update even where it was trimmed: the plain sum carries it.
  return jnp.where(jnp.all(jnp.isfinite(task_grads), axis=0), out, jnp.sum(task_grads, axis=0))


def trimmed_mean(trim_number: int = 1, task_weights: jax.typing.ArrayLike | None = None, *,
                 num_tasks: int | None = None) -> optax.GradientTransformation:
  """TrimmedMean as an Optax transformation of stacked task gradients.

  Args:
    trim_number: ``t >= 0`` values dropped at each end of every coordinate;
      needs ``K >= 2t + 1`` (``t = 1`` with K = 3 is the coordinate-wise median).
    task_weights: ``w`` (K,), finite and >= 0; None means all ones.
    num_tasks: K, optional (read from the updates); checked against them when given.

  Returns:
    An ``optax.GradientTransformation``: stacked task gradients (leading axis K
    on every leaf) in, a params-shaped update out (in each leaf's dtype).

  Raises:
    ValueError: for a bad ``trim_number``, or when K < 2t + 1.

  Notes:
    Same as TorchJD's ``TrimmedMean(trim_number)`` on the rows
    ``w_k g_k``: a mean (not a sum) of the kept values. It is a robust
    aggregator from distributed learning, included for comparison.

  References:
    Dong Yin, Yudong Chen, Kannan Ramchandran, Peter Bartlett, "Byzantine-Robust
    Distributed Learning: Towards Optimal Statistical Rates", ICML 2018.
    https://proceedings.mlr.press/v80/yin18a.html

  Example:
    >>> tx = optax.chain(trimmed_mean(1), optax.sgd(0.1))
  """
  if isinstance(trim_number, bool) or not isinstance(trim_number, int) or trim_number < 0:
    raise ValueError(f"trim_number must be an int >= 0, got {trim_number!r}")
  task_weights = hyperparams.check_task_weights(task_weights)
  k_static = resolve_num_tasks(task_weights, num_tasks)
  if k_static is not None and k_static < 2 * trim_number + 1:
    raise ValueError(f"trimmed_mean with trim_number={trim_number} needs K >= "
                     f"{2 * trim_number + 1} tasks, got K = {k_static}")

  def init_fn(params):
    del params
    return TrimmedMeanState(jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    k = checked_num_tasks(updates, k_static, "trimmed_mean")
    if k < 2 * trim_number + 1:
      raise ValueError(f"trimmed_mean with trim_number={trim_number} needs K >= "
                       f"{2 * trim_number + 1} tasks, got K = {k}")
    weights = weights_or_ones(task_weights, k)

    def one(leaf):
      dtype = compute_dtype(leaf.dtype)
      h = leaf.astype(dtype) * weights.astype(dtype).reshape((k,) + (1,) * (leaf.ndim - 1))
      return trim_leaf(h, trim_number).astype(leaf.dtype)

    out = jax.tree.map(one, updates)
    # A non-finite step (NaN or inf reaches the update) is not counted.
    count = jnp.where(all_finite(out), optax.safe_increment(state.count), state.count)
    return out, TrimmedMeanState(jnp.asarray(count, state.count.dtype))

  return optax.GradientTransformation(init_fn, update_fn)
