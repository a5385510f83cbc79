"""Geometric loss strategy, GLS (Chennupati et al., "MultiNet++: Multi-Stream Feature
Aggregation and Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019).

The objective is the geometric mean of the losses, ``L = (prod_k L_k)^(1/K)``;
its gradient is ``sum_k L / (K L_k) grad L_k``, i.e. the weights::

    w_k = G / (K L_k),    G = exp(mean_k log L_k).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax.loss_weighting._impl import LossWeighting, _guarded
from came_grad_jax.loss_weighting._shape import _num_losses

Array = jax.Array


class GLSState(NamedTuple):
  """State of :func:`gls` (empty: GLS keeps nothing between steps)."""


def gls() -> LossWeighting:
  """GLS: ``w_k = (prod_j L_j)^(1/K) / (K L_k)``, the gradient of the geometric mean.

  Losses must be positive: a loss <= 0 (or non-finite) gives NaN weights and
  leaves the state unchanged.

  Returns:
    A :class:`LossWeighting` whose state is a :class:`GLSState`.

  Notes:
    LibMTL backpropagates ``(prod_k L_k)^(1/K)`` itself: the same gradient.
    The TorchJD sources checked have no GLS.

  References:
    Sumanth Chennupati, Ganesh Sistu, Senthil Yogamani, Samir A Rawashdeh,
    "MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss Strategy for
    Multi-Task Learning", CVPR Workshops 2019. https://arxiv.org/abs/1904.08492

  Example:
    >>> g = gls()
    >>> weights, _ = g.update(jnp.array([1.0, 4.0]), g.init(2))
    >>> weights  # G = 2: (2 / 2, 2 / 8)
    Array([1.  , 0.25], dtype=float32)
  """

  def init(num_tasks: int) -> GLSState:
    del num_tasks  # K is read from the losses
    return GLSState()

  def update(losses: Array, state: GLSState) -> tuple[Array, GLSState]:
    k = _num_losses(losses)
    losses = jax.lax.stop_gradient(jnp.asarray(losses))
    safe = jnp.where(losses > 0, losses, 1.0)
    log_losses = jnp.log(safe)
    return jnp.exp(jnp.mean(log_losses) - log_losses) / k, state

  return LossWeighting(init, _guarded(update, positive=True))
