"""CR-MOGM (Zhou et al., "On the Convergence of Stochastic Multi-Objective Gradient
Manipulation and Beyond", NeurIPS 2022): any weighting's coefficients smoothed by an
exponential moving average kept in the state::

    c_t = beta c_{t-1} + (1 - beta) c_hat_t,     c_1 = c_hat_1,

``c_hat_t`` the wrapped weighting's coefficients for this step's Gram matrix.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax.weightings._base import AnyWeighting, StatefulWeighting, as_stateful, check_gram

Array = jax.Array


class EMAState(NamedTuple):
  """State of :func:`ema_weighting`."""

  inner: Any
  """The wrapped weighting's state."""
  coefficients: Array
  """``c_{t-1}`` (K,), the last smoothed coefficients."""
  count: Array
  """Number of steps seen, int32."""


def ema_weighting(weighting: AnyWeighting, beta: float = 0.9) -> StatefulWeighting:
  """Smooth ``weighting``'s coefficients: ``c_t = beta c_{t-1} + (1 - beta) c_hat_t``.

  The first step returns ``c_hat_1`` unchanged. Coefficients are those of the
  task-weighted gradients ``h_k``, so the smoothing is of the method's weights,
  not of the update (whose size follows the current gradients).

  Args:
    weighting: any weighting (``gram -> coefficients`` or a StatefulWeighting).
    beta: the weight of the past in [0, 1); 0 is the wrapped weighting itself.

  Returns:
    A :class:`StatefulWeighting` whose state is an :class:`EMAState`.

  Raises:
    ValueError: if ``beta`` is outside [0, 1), or (at ``init``) K is unknown.

  Notes:
    The paper writes ``lambda_t = alpha lambda_hat_t + (1 - alpha) lambda_{t-1}``:
    ``beta = 1 - alpha``. TorchJD 0.18's ``CRMOGMWeighting(weighting, alpha)`` uses
    ``alpha`` as the weight of the past (this ``beta``), defaults to ``alpha = 0.9``
    and, as here, starts from the first step's weights ``c_hat_1``.

  References:
    Shiji Zhou, Wenpeng Zhang, Jiyan Jiang, Wenliang Zhong, Jinjie Gu, Wenwu Zhu, "On
    the Convergence of Stochastic Multi-Objective Gradient Manipulation and Beyond",
    NeurIPS 2022. https://openreview.net/forum?id=ScwfQ7hdwyP

  Example:
    >>> from came_grad_jax.weightings import mgda
    >>> w = ema_weighting(mgda(), beta=0.5)
    >>> state = w.init(2)
    >>> c, state = w.apply(jnp.array([[1.0, 0.0], [0.0, 4.0]]), state)  # MGDA: (0.8, 0.2)
    >>> c, state = w.apply(jnp.eye(2), state)  # MGDA: (0.5, 0.5)
    >>> c
    Array([0.65, 0.35], dtype=float32)
  """
  hyperparams.check_scalar("beta", beta, lower=0.0, upper=1.0, upper_open=True)
  inner = as_stateful(weighting)

  def init(num_tasks: int | None) -> EMAState:
    if num_tasks is None:
      raise ValueError("ema_weighting (CR-MOGM) needs the number of tasks at construction (its "
                       "state holds the K smoothed coefficients): pass task_weights or num_tasks=K")
    return EMAState(inner.init(num_tasks), jnp.zeros((num_tasks,)), jnp.zeros([], jnp.int32))

  def apply(gram: Array, state: EMAState) -> tuple[Array, EMAState]:
    gram = check_gram(gram)
    raw, inner_state = inner.apply(gram, state.inner)
    raw = raw.astype(gram.dtype)
    previous = state.coefficients.astype(gram.dtype)
    coeffs = jnp.where(state.count > 0, beta * previous + (1.0 - beta) * raw, raw)
    count = jnp.minimum(state.count + 1, jnp.iinfo(jnp.int32).max)
    return coeffs, EMAState(inner_state, coeffs.astype(state.coefficients.dtype), count)

  return StatefulWeighting(init, apply)
