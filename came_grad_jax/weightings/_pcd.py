"""Priority-constrained descent, PCD (Varam et al., "Not All Objectives Are Born Equal:
Priority-Constrained Descent for Hierarchical Multi-Objective Optimization", TMLR 2026).

Task 1 is the primary objective, the others secondary. The update follows the
primary gradient as closely as possible while every secondary task keeps a
fraction ``tau`` of the progress of a step along its own normalised gradient::

    d~ = argmin_d 1/2 ||d - g~_1||^2   s.t.   <g~_j, d> >= tau ||g~_j||^2   (j >= 2),
    d  = ||h_1|| d~ / ||d~||,

with ``g~_k = s_k h_k``, ``s_k = 1 / sqrt(v^_k + eps)`` and ``v^`` the bias-corrected
exponential moving average of ``||h_k||^2`` (decay ``beta``), kept in the state.
By duality ``d~ = g~_1 + sum_j mu_j g~_j`` with ``mu = argmin_{mu >= 0} 1/2 mu^T G_ss mu
+ mu^T (G_s1 - tau diag G_ss)`` (``G`` the Gram matrix of the ``g~``), an exact
non-negative QP. When the constraints cannot all hold (the QP is unbounded), they are
dropped: ``d = h_1``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._active_set import nonnegative_qp
from came_grad_jax._numerics import correlation, norm_of, safe_divide
from came_grad_jax.weightings._base import StatefulWeighting, check_gram, not_differentiable

Array = jax.Array


class PCDState(NamedTuple):
  """State of :func:`pcd`."""

  sq_norm_ema: Array
  """``v`` (K,), the moving average of the squared task-gradient norms (not bias-corrected)."""
  count: Array
  """Number of steps seen, int32."""


def priority_weights(gram: Array, tau: Array | float) -> Array:
  """``[1, mu]``: the weights of ``d~ = g_1 + sum_j mu_j g_j`` for (normalised) gradients ``g``.

  Returns ``[1, 0, ..., 0]`` (the primary gradient) when the constraints are infeasible.

  Example:
    >>> priority_weights(jnp.array([[1.0, -1.0], [-1.0, 1.0]]), 0.0)  # opposed: d~ = 0
    Array([1., 1.], dtype=float32)
  """
  k = gram.shape[0]
  if k == 1:
    return jnp.ones((1,), gram.dtype)
  secondary = gram[1:, 1:]
  cosine, norms = correlation(secondary)
  linear = gram[1:, 0] - tau * jnp.diagonal(secondary)
  # In z_j = ||g_j|| mu_j the QP matrix is the cosine matrix (well conditioned).
  z, feasible = nonnegative_qp(cosine, safe_divide(linear, norms))
  mu = jnp.where(feasible, safe_divide(z, norms), 0.0)
  return jnp.concatenate([jnp.ones((1,), gram.dtype), mu])


_priority_weights = not_differentiable(priority_weights, "PCD")


def pcd(tau: float = 0.02, beta: float = 0.999, eps: float = 1e-8) -> StatefulWeighting:
  """PCD: follow task 1, guarantee each other task ``tau`` of its normalised progress.

  Args:
    tau: the guaranteed fraction in [0, 1] (the paper's and TorchJD's 0.02).
    beta: decay in [0, 1) of the moving average of squared gradient norms (0.999).
    eps: added to the moving average before its inverse square root (1e-8).

  Returns:
    A :class:`StatefulWeighting` whose state is a :class:`PCDState`; the
    coefficients make ``||d|| = ||h_1||`` (0 when ``h_1 = 0`` or ``d~`` cancels).

  Raises:
    ValueError: for a hyperparameter out of range, or (at ``init``) K unknown.

  Notes:
    Same problem and defaults as TorchJD's ``PCD(tau, beta, eps)`` (the first row is
    the primary objective), solved here by the Lawson-Hanson active-set method on
    the dual instead of Goldfarb-Idnani; TorchJD drops the constraints when the
    primal is infeasible, as here. The rows here are the task-weighted ``h_k``,
    whose weights cancel in the normalisation (up to ``eps``). Only a scalar
    ``tau`` is taken.

  References:
    Dara Varam et al., "Not All Objectives Are Born Equal: Priority-Constrained Descent
    for Hierarchical Multi-Objective Optimization", TMLR 2026.
    https://openreview.net/forum?id=HT01yGHLEt

  Example:
    >>> w = pcd(tau=0.5, beta=0.0, eps=0.0)
    >>> c, _ = w.apply(jnp.array([[1.0, -0.5], [-0.5, 1.0]]), w.init(2))
    >>> [round(float(x), 4) for x in c]  # d = h1 + h2: <h2, d> = 1/2, ||d|| = ||h1||
    [1.0, 1.0]
  """
  hyperparams.check_scalar("tau", tau, lower=0.0, upper=1.0)
  hyperparams.check_scalar("beta", beta, lower=0.0, upper=1.0, upper_open=True)
  hyperparams.check_scalar("eps", eps, lower=0.0)

  def init(num_tasks: int | None) -> PCDState:
    if num_tasks is None:
      raise ValueError("pcd needs the number of tasks at construction (its state holds the K "
                       "moving averages of squared norms): pass task_weights or num_tasks=K")
    return PCDState(jnp.zeros((num_tasks,)), jnp.zeros([], jnp.int32))

  def apply(gram: Array, state: PCDState) -> tuple[Array, PCDState]:
    gram = check_gram(gram)
    sq_norms = jnp.maximum(jnp.diagonal(gram), 0.0)
    count = state.count + 1
    ema = beta * state.sq_norm_ema.astype(gram.dtype) + (1.0 - beta) * sq_norms
    debiased = ema / (1.0 - beta ** count.astype(gram.dtype))
    denominator = jnp.sqrt(debiased + eps)
    scales = safe_divide(1.0, denominator)
    # Scaled one side at a time: the product s_i s_j of two 1e-19 scales (Gram
    # entries near 1e38) is below float32's normal range and would flush to 0.
    w = _priority_weights(gram * scales[:, None] * scales[None, :], tau)
    direction = w * scales  # d~ = sum_k w_k s_k h_k
    length = norm_of(gram, direction)
    coeffs = direction * safe_divide(jnp.sqrt(sq_norms[0]), length)
    coeffs = jnp.where(sq_norms[0] > 0, coeffs, 0.0)
    return coeffs, PCDState(ema.astype(state.sq_norm_ema.dtype),
                            jnp.minimum(count, jnp.iinfo(jnp.int32).max))

  return StatefulWeighting(init, apply)
