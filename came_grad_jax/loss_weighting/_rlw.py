"""Random loss weighting, RLW (Lin et al., "Reasonable Effectiveness of Random Weighting:
A Litmus Test for Multi-Task Learning", TMLR 2022).

Each step draws fresh weights ``w = softmax(z)``, ``z ~ N(0, I_K)``; the PRNG key
lives in the state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from came_grad_jax._random import as_key, fresh_key
from came_grad_jax.loss_weighting._impl import LossWeighting, _guarded
from came_grad_jax.loss_weighting._shape import _num_losses

Array = jax.Array


class RLWState(NamedTuple):
  """State of :func:`rlw`."""

  key: Array
  """Typed PRNG key (``jax.random.key``) of the next step's weights."""


def rlw(key: jax.Array | int = 0) -> LossWeighting:
  """RLW: ``w = softmax(z)``, ``z ~ N(0, I)`` drawn anew every step.

  Args:
    key: the PRNG key (``jax.random.key``) or an int seed.

  Returns:
    A :class:`LossWeighting` whose state is an :class:`RLWState`.

  Notes:
    The weights sum to 1 (LibMTL's and TorchJD's ``Random`` convention),
    so the weighted loss is about ``1/K`` of the plain sum: scale the learning
    rate by K to compare with linear scalarization.

  References:
    Baijiong Lin, Feiyang Ye, Yu Zhang, Ivor W. Tsang, "Reasonable Effectiveness of
    Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022.
    https://arxiv.org/abs/2111.10603

  Example:
    >>> r = rlw(key=0)
    >>> weights, state = r.update(jnp.array([1.0, 4.0]), r.init(2))
    >>> float(weights.sum())
    1.0
  """
  key = as_key(key)

  def init(num_tasks: int) -> RLWState:
    del num_tasks  # K is read from the losses
    return RLWState(fresh_key(key))

  def update(losses: Array, state: RLWState) -> tuple[Array, RLWState]:
    k = _num_losses(losses)
    key_, sub = jax.random.split(state.key)
    return jax.nn.softmax(jax.random.normal(sub, (k,))), RLWState(key_)

  return LossWeighting(init, _guarded(update))
