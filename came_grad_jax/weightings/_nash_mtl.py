"""Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022).

The Nash bargaining solution of the tasks: ``d = sum_k alpha_k h_k`` with
``alpha > 0`` solving the fixed-point equation::

    (M alpha)_k = 1 / alpha_k  for every k,   i.e. alpha_k <h_k, d> = 1,

the stationarity condition of the strictly convex
``phi(alpha) = 1/2 alpha^T M alpha - sum_k log alpha_k``. Writing ``M = D C D``
(``D = diag ||h_k||``, ``C`` the cosine matrix) and ``alpha = D^-1 beta`` it
becomes ``C beta = 1 / beta``: ``beta`` depends only on the directions, so the
problem is solved on ``C`` by damped Newton steps (Nesterov & Nemirovski:
``phi`` is self-concordant, so the step ``1 / (1 + decrement)`` stays in
``beta > 0`` and converges quadratically).

The equation has no solution when the point is Pareto-stationary (0 in the hull
of the gradients): ``beta`` then grows without bound while ``d`` cancels. Once
``||d||^2 = beta^T C beta = K`` is rounding noise of its terms the result is
the zero update. The authors' code instead solves on ``M / ||M||_F`` with
CVXPY, warm-started from the previous step, and clips ``||d||`` to 1;
this is the paper's equation, solved to machine precision at every step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import _numerics as numerics
from came_grad_jax._numerics import correlation, safe_divide
from came_grad_jax.weightings._base import (
  Weighting,
  check_gram,
  not_differentiable,
  scale_covariant,
)

Array = jax.Array


class _Newton(NamedTuple):
  beta: Array
  decrement_sq: Array
  iteration: Array


def _diverged(cosine: Array, beta: Array) -> Array:
  """Whether ``||sum_k beta_k u_k||^2`` (= K at the solution) is rounding noise of its terms."""
  return numerics.is_negligible(beta @ cosine @ beta, numerics.term_scale_sq(cosine, beta),
                               cosine.shape[0])


def _newton_step(cosine: Array, beta: Array) -> tuple[Array, Array]:
  """One damped Newton step on ``1/2 beta^T C beta - sum log beta``; returns (beta, decrement^2)."""
  grad = cosine @ beta - 1.0 / beta
  hessian = cosine + jnp.diag(1.0 / beta**2)
  step = -jnp.linalg.solve(hessian, grad)
  decrement_sq = -(grad @ step)
  damping = jnp.where(decrement_sq < 1.0 / 16, 1.0, 1.0 / (1.0 + jnp.sqrt(decrement_sq)))
  return beta + damping * step, decrement_sq


def bargaining_solution(cosine: Array, *, max_iter: int = 100) -> Array:
  """``beta > 0`` with ``C beta = 1 / beta`` for a cosine matrix ``C``; 0 if there is none.

  Args:
    cosine: (K, K) PSD with unit diagonal.
    max_iter: cap on Newton steps.

  Returns:
    ``beta`` (K,), or zeros when the problem is Pareto-stationary.

  Example:
    >>> bargaining_solution(jnp.eye(2))
    Array([1., 1.], dtype=float32)
  """
  k = cosine.shape[0]
  ones = jnp.ones((k,), cosine.dtype)
  total = ones @ cosine @ ones
  # beta = s 1 with s^2 1^T C 1 = K solves the equation along the diagonal.
  scale = jnp.sqrt(k / jnp.where(_diverged(cosine, ones), 1.0, total))
  tol = 16 * k * jnp.finfo(cosine.dtype).eps

  def cond(s: _Newton):
    return ((s.decrement_sq > tol) & (s.iteration < max_iter)
            & ~_diverged(cosine, s.beta))

  def body(s: _Newton):
    beta, decrement_sq = _newton_step(cosine, s.beta)
    return _Newton(beta, decrement_sq, s.iteration + 1)

  init = _Newton(scale * ones, jnp.asarray(jnp.inf, cosine.dtype), jnp.array(0))
  beta = jax.lax.while_loop(cond, body, init).beta
  return jnp.where(_diverged(cosine, beta), 0.0, beta)


def nash_mtl() -> Weighting:
  """Nash-MTL: ``c = alpha`` with ``M alpha = 1 / alpha`` (elementwise), ``alpha > 0``.

  Every task gains: ``<h_k, d> = 1 / alpha_k > 0``, and ``||d||^2 = K``. Zero
  gradients get ``c_k = 0`` (they take no part in the bargaining);
  Pareto-stationary inputs (no solution) give ``c = 0``.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Example:
    >>> nash_mtl()(jnp.array([[1.0, 0.0], [0.0, 4.0]]))  # alpha_k = 1 / ||h_k||
    Array([1. , 0.5], dtype=float32)
  """

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    cosine, norms = correlation(gram)  # absent tasks: a decoupled unit row, beta_k = 1
    beta = bargaining_solution(cosine)
    return safe_divide(beta, norms)

  return not_differentiable(scale_covariant(weighting, -0.5), "Nash-MTL")
