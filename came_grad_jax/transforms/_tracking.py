"""Gradient tracking: an exponential moving average of each task's gradient, kept in the state.

MoCo and DB-MTL reduce *tracked* task gradients rather than this step's ones::

    y_k <- beta_t y_k + (1 - beta_t) g_k,   beta_t = beta / t^sigma   (y_k = g_k at step 1),

a transformation from stacked task gradients to stacked tracked gradients, to be
chained before a reducing transformation such as :func:`came_grad_jax.aggregate`.
Its state holds K params-shaped trees (K times the parameters' memory).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._gram import num_tasks_of
from came_grad_jax._stacked import all_finite

Array = jax.Array


class TrackState(NamedTuple):
  """State of :func:`track_gradients`."""

  tracked: Any
  """``y`` of shape ``(K, *params)`` per leaf, the tracked task gradients."""
  count: Array
  """Number of steps seen, int32."""


def track_gradients(beta: float, num_tasks: int, *,
                    beta_sigma: float = 0.0) -> optax.GradientTransformation:
  """``y_k <- beta_t y_k + (1 - beta_t) g_k`` on stacked task gradients; returns ``y``.

  ``beta_t = beta / t^beta_sigma`` at the t-th step (``y_k = g_k`` at the first), the decaying
  weight of LibMTL's ``beta_sigma`` options; ``beta_sigma = 0`` keeps it constant. Non-finite
  gradients pass through to the output (for ``optax.apply_if_finite`` downstream to reject)
  but never into the state, and do not count as a step.

  Args:
    beta: the weight of the past in [0, 1); 0 passes the gradients through.
    num_tasks: K, needed to size the state from the parameters.
    beta_sigma: decay exponent of that weight, >= 0.

  Returns:
    An ``optax.GradientTransformation``: stacked task gradients in, stacked
    tracked gradients (same shapes and dtypes) out.

  Raises:
    ValueError: if ``beta`` is outside [0, 1), ``beta_sigma`` is negative or
      ``num_tasks`` is not a positive int.

  Example:
    >>> tx = track_gradients(0.5, num_tasks=2)
    >>> state = tx.init(jnp.zeros(1))
    >>> y, state = tx.update(jnp.array([[2.0], [4.0]]), state)
    >>> y, state = tx.update(jnp.array([[0.0], [0.0]]), state)
    >>> y
    Array([[1.],
           [2.]], dtype=float32)
  """
  hyperparams.check_scalar("beta", beta, lower=0.0, upper=1.0, upper_open=True)
  hyperparams.check_scalar("beta_sigma", beta_sigma, lower=0.0)
  if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
    raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")

  def init_fn(params):
    tracked = jax.tree.map(lambda p: jnp.zeros((num_tasks,) + jnp.shape(p), jnp.result_type(p)),
                           params)
    return TrackState(tracked, jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    k = num_tasks_of(updates)
    if k != num_tasks:
      raise ValueError(f"updates have a leading task axis of {k} but the gradient tracking "
                       f"was built for K = {num_tasks} tasks")
    first = state.count == 0
    # The t-th step (t = count + 1) weights the past by beta / t^beta_sigma.
    step = (state.count + 1).astype(jnp.result_type(float))
    weight = beta / step**beta_sigma
    tracked = jax.tree.map(
        lambda y, g: jnp.where(first, g, weight * y + (1.0 - weight) * g).astype(g.dtype),
        state.tracked, updates)
    ok = all_finite(updates)
    kept = jax.tree.map(lambda new, old: jnp.where(ok, new, old).astype(old.dtype),
                        tracked, state.tracked)
    count = jnp.where(ok, jnp.asarray(optax.safe_increment(state.count)), state.count)
    return tracked, TrackState(kept, count)

  return optax.GradientTransformation(init_fn, update_fn)
