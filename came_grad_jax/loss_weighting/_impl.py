"""Loss weightings: task weights from the loss values alone, with their state.

These methods need no per-task gradients: each step they turn the K loss values
into weights ``w`` and the model takes one backward pass of ``sum_k w_k L_k``.
A :class:`LossWeighting` is a pair of pure functions::

    state = weighting.init(num_tasks)
    weights, state = weighting.update(losses, state)   # inside the train step
    loss = jnp.sum(weights * losses)                   # weights carry no gradient

``update`` returns the weights for the current step, then the state after
observing ``losses``. Everything is jit-compatible; the state is a NamedTuple of
arrays.

* :func:`uncertainty_weighting` (Kendall et al., CVPR 2018),
* :func:`dwa`, Dynamic Weight Average (Liu et al., CVPR 2019),
* :func:`famo`, Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._numerics import safe_divide

Array = jax.Array


class LossWeighting(NamedTuple):
  """Task weights from loss values.

  Attributes:
    init: ``num_tasks -> state``.
    update: ``(losses (K,), state) -> (weights (K,), state)``.
  """

  init: Callable[[int], Any]
  update: Callable[[Array, Any], tuple[Array, Any]]


def _observed(losses: Array, num_tasks: int) -> Array:
  """The losses as constants (no gradient flows into the weights), checked to be (K,)."""
  losses = jnp.asarray(losses)
  if losses.shape != (num_tasks,):
    raise ValueError(f"losses must have shape ({num_tasks},), got {losses.shape}")
  return jax.lax.stop_gradient(losses)


def _guarded(update: Callable[[Array, Any], tuple[Array, Any]], *,
             positive: bool = False) -> Callable[[Array, Any], tuple[Array, Any]]:
  """``update`` whose state never sees a bad loss vector.

  Non-finite losses (or, with ``positive``, a loss <= 0, outside the method's
  domain) make the weights NaN, so that the weighted loss, its gradients and
  ``optax.apply_if_finite`` skip the step, and leave the state as it was.
  """

  def guarded(losses: Array, state: Any) -> tuple[Array, Any]:
    weights, new_state = update(losses, state)
    losses = jnp.asarray(losses)
    ok = jnp.all(jnp.isfinite(losses))
    if positive:
      ok &= jnp.all(losses > 0)
    new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
    return jnp.where(ok, weights, jnp.nan), new_state

  return guarded


def _step(optimizer: optax.GradientTransformation, grad: Array, params: Array,
          opt_state: Any) -> tuple[Array, Any]:
  """One step of ``optimizer`` on a small parameter vector."""
  updates, opt_state = optimizer.update(grad, opt_state, params)
  return jnp.asarray(optax.apply_updates(params, updates)), opt_state


class UncertaintyState(NamedTuple):
  """State of :func:`uncertainty_weighting`."""

  log_variance: Array
  """``s_k = log sigma_k^2`` (K,)."""
  opt_state: Any
  """The state of the optimizer of ``s``."""


def uncertainty_weighting(optimizer: optax.GradientTransformation | None = None
                          ) -> LossWeighting:
  """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

  The objective is ``sum_k 1/2 exp(-s_k) L_k + 1/2 s_k`` in the model and the
  log-variances ``s``: the model's weights are ``w_k = 1/2 exp(-s_k)`` and ``s``
  takes a step of ``optimizer`` on ``d/ds_k = 1/2 (1 - exp(-s_k) L_k)``, which
  drives ``s_k`` toward ``log L_k``. ``s`` starts at 0 (``w = 1/2``).

  Args:
    optimizer: the optimizer of ``s``; default ``optax.adam(1e-2)``.

  Returns:
    A :class:`LossWeighting` whose state is an :class:`UncertaintyState`.

  Raises:
    TypeError: if ``optimizer`` is not an Optax transformation.

  Example:
    >>> uw = uncertainty_weighting(optax.sgd(0.1))
    >>> weights, state = uw.update(jnp.array([1.0, 4.0]), uw.init(2))
    >>> weights
    Array([0.5, 0.5], dtype=float32)
  """
  optimizer = optax.adam(1e-2) if optimizer is None else optimizer
  hyperparams.check_optimizer("optimizer", optimizer)

  def init(num_tasks: int) -> UncertaintyState:
    s = jnp.zeros((num_tasks,))
    return UncertaintyState(s, optimizer.init(s))

  def update(losses: Array, state: UncertaintyState) -> tuple[Array, UncertaintyState]:
    s = state.log_variance
    losses = _observed(losses, s.shape[0])
    precision = jnp.exp(-s)
    grad = 0.5 * (1.0 - precision * losses)
    s, opt_state = _step(optimizer, grad, s, state.opt_state)
    return 0.5 * precision, UncertaintyState(s, opt_state)

  return LossWeighting(init, _guarded(update))


class DWAState(NamedTuple):
  """State of :func:`dwa`."""

  previous: Array
  """``L(t-1)`` (K,)."""
  before_previous: Array
  """``L(t-2)`` (K,)."""
  count: Array
  """Number of updates seen, int32."""


def dwa(temperature: float = 2.0) -> LossWeighting:
  """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

  ``w_k(t) = K exp(r_k / T) / sum_i exp(r_i / T)`` with the loss ratio
  ``r_k = L_k(t-1) / L_k(t-2)``; ``w = 1`` for the first two steps. The paper
  uses epoch-averaged losses: call ``update`` once per epoch with them and keep
  the weights for the epoch; calling it every step uses per-step losses.

  Args:
    temperature: ``T`` > 0; larger is closer to equal weights.

  Returns:
    A :class:`LossWeighting` whose state is a :class:`DWAState`.

  Example:
    >>> w = dwa(2.0)
    >>> state = w.init(2)
    >>> for losses in ([1.0, 1.0], [0.5, 1.0], [0.2, 1.0]):
    ...   weights, state = w.update(jnp.array(losses), state)
    >>> weights  # the first task's loss fell faster: it gets less weight
    Array([0.87..., 1.12...], dtype=float32)
  """
  hyperparams.check_scalar("temperature", temperature, lower=0.0, lower_open=True)

  def init(num_tasks: int) -> DWAState:
    return DWAState(jnp.ones((num_tasks,)), jnp.ones((num_tasks,)), jnp.zeros([], jnp.int32))

  def update(losses: Array, state: DWAState) -> tuple[Array, DWAState]:
    k = state.previous.shape[0]
    losses = _observed(losses, k)
    denom = state.before_previous
    ratio = safe_divide(state.previous, denom, 1.0, where=denom != 0)
    weights = jnp.where(state.count >= 2, k * jax.nn.softmax(ratio / temperature), 1.0)
    new = DWAState(losses.astype(state.previous.dtype), state.previous,
                   jnp.asarray(optax.safe_increment(state.count)))
    return weights, new

  return LossWeighting(init, _guarded(update))


class FAMOState(NamedTuple):
  """State of :func:`famo`."""

  logits: Array
  """``xi`` (K,): the task weights are ``z = softmax(xi)``."""
  opt_state: Any
  """The state of the optimizer of ``xi``."""
  previous: Array
  """The losses of the previous step (K,)."""
  count: Array
  """Number of updates seen, int32."""


def famo(optimizer: optax.GradientTransformation | None = None,
         eps: float = 1e-8) -> LossWeighting:
  """FAMO, Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023).

  The model follows ``sum_k z_k grad log L_k`` normalised by
  ``c = sum_k z_k / L_k``: weights ``w_k = (z_k / L_k) / sum_i (z_i / L_i)``
  with ``z = softmax(xi)``. ``xi`` is then moved toward balanced improvement:
  with ``delta_k = log L_k(t-1) - log L_k(t)``, a step of ``optimizer`` on the
  gradient ``J_softmax^T delta = z * (delta - <z, delta>)`` lowers the weight of
  the tasks that improved most. The authors re-evaluate the losses on the same
  batch after the step; here ``L(t)`` is the next step's loss (one forward
  pass per step). Losses must be positive (or shifted by a known lower bound):
  a loss <= 0 gives NaN weights (the step is skipped by ``optax.apply_if_finite``)
  and leaves the state unchanged, as a non-finite loss does for every loss weighting.

  Args:
    optimizer: the optimizer of ``xi``; default Adam(0.025) with L2 weight
      decay 1e-3, the authors' setting.
    eps: added to the losses inside the logarithms and the divisions.

  Returns:
    A :class:`LossWeighting` whose state is a :class:`FAMOState`.

  Raises:
    TypeError: if ``optimizer`` is not an Optax transformation.
    ValueError: if ``eps`` is negative or not finite.

  Example:
    >>> f = famo()
    >>> weights, state = f.update(jnp.array([1.0, 4.0]), f.init(2))
    >>> weights  # z = 1/2: inverse-loss weights
    Array([0.8, 0.2], dtype=float32)
  """
  if optimizer is None:
    optimizer = optax.chain(optax.add_decayed_weights(1e-3), optax.adam(0.025))
  hyperparams.check_optimizer("optimizer", optimizer)
  hyperparams.check_scalar("eps", eps, lower=0.0)

  def init(num_tasks: int) -> FAMOState:
    logits = jnp.zeros((num_tasks,))
    return FAMOState(logits, optimizer.init(logits), jnp.ones((num_tasks,)),
                     jnp.zeros([], jnp.int32))

  def update(losses: Array, state: FAMOState) -> tuple[Array, FAMOState]:
    losses = _observed(losses, state.logits.shape[0]).astype(state.logits.dtype)
    z = jax.nn.softmax(state.logits)
    delta = jnp.log(state.previous + eps) - jnp.log(losses + eps)
    logits, opt_state = _step(optimizer, z * (delta - z @ delta), state.logits,
                              state.opt_state)
    seen = state.count > 0  # no previous loss before the first step
    logits, opt_state = jax.tree.map(lambda new, old: jnp.where(seen, new, old),
                                     (logits, opt_state), (state.logits, state.opt_state))
    inverse = jax.nn.softmax(logits) / (losses + eps)
    return inverse / jnp.sum(inverse), FAMOState(logits, opt_state, losses,
                                                  jnp.asarray(optax.safe_increment(state.count)))

  return LossWeighting(init, _guarded(update, positive=True))
