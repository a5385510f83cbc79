"""Smooth Tchebycheff scalarization, STCH (Lin et al., "Smooth Tchebycheff Scalarization
for Multi-Objective Optimization", ICML 2024).

The objective is a smooth maximum of the log losses relative to a nadir point ``z``::

    L = K mu log sum_k exp((log L_k - log z_k) / mu),

whose gradient is ``sum_k w_k grad L_k`` with ``w_k = K s_k / L_k``,
``s = softmax((log L - log z) / mu)``. As the authors' LibMTL code does, ``z`` is
the mean loss over the first ``warmup_steps`` steps, during which the objective is
``sum_k log L_k`` (``w_k = 1 / L_k``); with ``warmup_steps = 0``, ``z = 1``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax.loss_weighting._impl import LossWeighting, _guarded, _observed

Array = jax.Array


class STCHState(NamedTuple):
  """State of :func:`stch`."""

  loss_sum: Array
  """Sum of the losses seen during the warm-up (K,)."""
  count: Array
  """Number of updates seen, int32."""


def stch(mu: float = 1.0, warmup_steps: int = 0) -> LossWeighting:
  """STCH: ``w_k = K softmax((log L - log z) / mu)_k / L_k`` after a warm-up that sets ``z``.

  Args:
    mu: smoothing ``> 0``; small ``mu`` approaches the Tchebycheff (max) scalarization.
    warmup_steps: steps of ``sum_k log L_k`` whose mean losses become the nadir
      ``z`` (the authors use 4 epochs); 0 means ``z = 1``.

  Returns:
    A :class:`LossWeighting` whose state is an :class:`STCHState`.

  Raises:
    ValueError: if ``mu`` is not positive or ``warmup_steps`` is not an int >= 0.

  Notes:
    With ``z = 1`` and ``mu = 1`` the weights are ``K / sum_j L_j`` for every task
    (the sum of the losses, rescaled). TorchJD's ``STCH`` aggregator applies
    the same softmax to gradient norms (from the Gramian) instead of losses, with a
    nadir of gradient norms: a different method under the same name.

  References:
    Xi Lin, Xiaoyuan Zhang, Zhiyuan Yang, Fei Liu, Zhenkun Wang, Qingfu Zhang, "Smooth
    Tchebycheff Scalarization for Multi-Objective Optimization", ICML 2024.
    https://arxiv.org/abs/2402.19078

  Example:
    >>> s = stch(mu=0.5)
    >>> weights, _ = s.update(jnp.array([1.0, 2.0]), s.init(2))
    >>> weights  # softmax(2 log L) = (1/5, 4/5); times K / L
    Array([0.4, 0.8], dtype=float32)
  """
  hyperparams.check_scalar("mu", mu, lower=0.0, lower_open=True)
  if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
    raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")

  def init(num_tasks: int) -> STCHState:
    return STCHState(jnp.zeros((num_tasks,)), jnp.zeros([], jnp.int32))

  def update(losses: Array, state: STCHState) -> tuple[Array, STCHState]:
    k = state.loss_sum.shape[0]
    losses = _observed(losses, k).astype(state.loss_sum.dtype)
    safe = jnp.where(losses > 0, losses, 1.0)
    warming = state.count < warmup_steps
    nadir = state.loss_sum / max(warmup_steps, 1) if warmup_steps else jnp.ones((k,))
    scores = jax.nn.softmax((jnp.log(safe) - jnp.log(nadir)) / mu)
    weights = jnp.where(warming, 1.0, k * scores) / safe
    loss_sum = jnp.where(warming, state.loss_sum + losses, state.loss_sum)
    return weights, STCHState(loss_sum, jnp.asarray(optax.safe_increment(state.count)))

  return LossWeighting(init, _guarded(update, positive=True))
