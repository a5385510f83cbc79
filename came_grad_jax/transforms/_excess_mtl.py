"""ExcessMTL (He, Zhou, Zhang & Wang, "Robust Multi-Task Learning with Excess Risks",
ICML 2024).

Task weights follow the tasks' estimated *excess* risks (distance to their own
optimum) rather than their losses, by exponentiated gradient ascent. The excess
risk of task k is estimated to second order with AdaGrad's diagonal Hessian::

    A_k <- A_k + g_k^2,     r_k = sum_j g_kj^2 / sqrt(A_kj + eps),
    q_k <- q_k exp(eta r_k / r_k^(1)),    q <- K q / sum q,    d = sum_k q_k w_k g_k,

``r^(1)`` the first step's estimates (the paper's normalisation), ``A`` and ``q``
in the state. The squares need the gradients themselves: a transformation of its own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._gram import combine
from came_grad_jax._numerics import compute_dtype, safe_divide
from came_grad_jax._stacked import (
  all_finite,
  checked_num_tasks,
  per_task_sum,
  required_num_tasks,
  skip_unless,
  weights_or_ones,
)

Array = jax.Array


class ExcessMTLState(NamedTuple):
  """State of :func:`excess_mtl`."""

  squares: Any
  """``A`` of shape ``(K, *params)`` per leaf: the accumulated squared task gradients."""
  weights: Array
  """``q`` (K,), summing to K."""
  initial_risk: Array
  """``r^(1)`` (K,), the first step's excess-risk estimates."""
  count: Array
  """Number of steps seen, int32."""


def excess_risks(task_grads, squares, eps: float) -> Array:
  """``r_k = sum_j g_kj^2 / sqrt(A_kj + eps)`` over every leaf: (K,).

  Example:
    >>> g = {"w": jnp.array([[3.0, 0.0], [1.0, 1.0]])}
    >>> excess_risks(g, jax.tree.map(jnp.square, g), 0.0)  # sum_j |g_kj|
    Array([3., 2.], dtype=float32)
  """
  return per_task_sum(jax.tree.map(
      lambda g, a: safe_divide(jnp.square(g), jnp.sqrt(a + eps)), task_grads, squares))


def excess_mtl(step_size: float = 1e-2, task_weights: jax.typing.ArrayLike | None = None, *,
               num_tasks: int | None = None, eps: float = 1e-7) -> optax.GradientTransformation:
  """ExcessMTL: exponentiated-gradient task weights from AdaGrad excess-risk estimates.

  Args:
    step_size: ``eta > 0`` of the weights (the authors' "robust step size", 1e-2).
    task_weights: ``w`` (K,), finite and >= 0; None means all ones. Multiply the
      update; the excess risks are of the unweighted task gradients.
    num_tasks: K (required: the state holds K params-shaped accumulators).
    eps: added under the square root.

  Returns:
    An ``optax.GradientTransformation``: stacked task gradients in, a
    params-shaped update out. Its state holds K copies of the parameters.

  Raises:
    ValueError: if K is unknown or a hyperparameter is out of range.

  Notes:
    LibMTL divides by the first step's estimates only from the second step on;
    here every step is normalised by them (the first step's weights stay 1).
    The update is the gradient of ``sum_k q_k w_k L_k``: LibMTL's convention
    (weights summing to K). TorchJD's ``ExcessMTL(robust_step_size=1.0,
    n_warmup_steps=1)`` keeps the weights on the simplex (sum 1, so its update is
    1/K of this one), holds them uniform for the warm-up steps, and takes their
    mean risk as the baseline.

  References:
    Yifei He, Shiji Zhou, Guojun Zhang, Hyokun Yun, Yi Xu, Belinda Zeng, Trishul
    Chilimbi, Han Zhao, "Robust Multi-Task Learning with Excess Risks", ICML 2024.
    https://arxiv.org/abs/2402.02009

  Example:
    >>> tx = optax.chain(excess_mtl(1e-2, num_tasks=2), optax.sgd(0.1))
  """
  hyperparams.check_scalar("step_size", step_size, lower=0.0, lower_open=True)
  hyperparams.check_scalar("eps", eps, lower=0.0)
  task_weights = hyperparams.check_task_weights(task_weights)
  k_static = required_num_tasks(task_weights, num_tasks, "excess_mtl", "K gradient accumulators")

  def init_fn(params):
    squares = jax.tree.map(
        lambda p: jnp.zeros((k_static,) + jnp.shape(p), compute_dtype(jnp.result_type(p))),
        params)
    return ExcessMTLState(squares, jnp.ones((k_static,)), jnp.ones((k_static,)),
                          jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    k = checked_num_tasks(updates, k_static, "excess_mtl")
    grads = jax.tree.map(lambda g: g.astype(compute_dtype(g.dtype)), updates)
    squares = jax.tree.map(lambda a, g: a + jnp.square(g).astype(a.dtype), state.squares, grads)
    risks = excess_risks(grads, squares, eps).astype(state.weights.dtype)
    initial = jnp.where(state.count == 0, risks, state.initial_risk)
    q = state.weights * jnp.exp(step_size * safe_divide(risks, initial, 1.0))
    q = k * q / jnp.sum(q)
    out = combine(updates, q * weights_or_ones(task_weights, k).astype(q.dtype))
    new_state = ExcessMTLState(squares, q, initial, jnp.asarray(optax.safe_increment(state.count)))
    return skip_unless(all_finite(updates), out, new_state, state)

  return optax.GradientTransformation(init_fn, update_fn)
