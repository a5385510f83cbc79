"""FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024).

The alpha-fair allocation of the update among the tasks: ``d = sum_k w_k h_k``
with ``w > 0`` solving::

    (M w)_k = w_k^(-1/alpha)   for every k,   i.e.  <h_k, d> = w_k^(-1/alpha),

the stationarity condition of the strictly convex
``phi(w) = 1/2 w^T M w - sum_k f(w_k)`` with ``f' = w^(-1/alpha)``
(``f = log`` for alpha = 1, where the equation is Nash-MTL's). With
``w = D^-1 beta`` (``D = diag ||h_k||``, ``M = D C D``) it reads
``C beta = a * beta^(-1/alpha)``, ``a_k = ||h_k||^(1/alpha - 1)``, solved by
Newton steps that keep ``beta > 0``, with a backtracking line search on ``phi``
while far from the solution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._numerics import correlation, safe_divide
from came_grad_jax.weightings._base import (
  Weighting,
  check_gram,
  not_differentiable,
  scale_covariant,
)
from came_grad_jax.weightings._nash_mtl import _diverged, _Newton

Array = jax.Array


def _concave_part(beta: Array, alpha: float | Array) -> Array:
  """``f(beta)`` with ``f' = beta^(-1/alpha)``: ``log`` for alpha = 1, else ``beta^q / q``.

  ``q = 1 - 1/alpha``; chosen by value, so that a traced ``alpha``
  (``optax.inject_hyperparams`` under ``jit``) works too.
  """
  q = 1.0 - 1.0 / alpha
  q_safe = jnp.where(q == 0, 1.0, q)
  return jnp.where(q == 0, jnp.log(beta), beta**q_safe / q_safe)


def fair_allocation(cosine: Array, a: Array, alpha: float | Array, *,
                    max_iter: int = 100) -> Array:
  """``beta > 0`` with ``C beta = a * beta^(-1/alpha)``; 0 where it diverges (Pareto-stationary).

  Args:
    cosine: (K, K) PSD with unit diagonal.
    a: (K,) positive task factors ``||h_k||^(1/alpha - 1)``.
    alpha: the fairness exponent, > 0.
    max_iter: cap on Newton steps.

  Returns:
    ``beta`` (K,), or zeros when ``||sum_k beta_k u_k||`` cancels to rounding noise.

  Example:
    >>> fair_allocation(jnp.eye(2), jnp.ones(2), 2.0)  # beta^3 = 1
    Array([1., 1.], dtype=float32)
  """
  k = cosine.shape[0]

  def phi(beta):
    return 0.5 * beta @ cosine @ beta - a @ _concave_part(beta, alpha)

  def diverged(beta):
    return _diverged(cosine, beta)

  tol = 16 * k * jnp.finfo(cosine.dtype).eps

  def cond(s: _Newton):
    return (s.decrement_sq > tol) & (s.iteration < max_iter) & ~diverged(s.beta)

  def body(s: _Newton):
    beta = s.beta
    power = beta ** (-1.0 / alpha)
    grad = cosine @ beta - a * power
    hessian = cosine + jnp.diag(a * power / (alpha * beta))
    step = -jnp.linalg.solve(hessian, grad)
    decrement_sq = -(grad @ step)
    # Largest step in (0, 1] that keeps beta > 0 (with a margin), then backtracking.
    shrink = jnp.where(step < 0, -beta / jnp.where(step < 0, step, -1.0), jnp.inf)
    t0 = jnp.minimum(1.0, 0.99 * jnp.min(shrink))
    f0 = phi(beta)

    # Close to the solution (decrement^2 < 1/16) the full step is taken: there the
    # decrease of phi is below its rounding and Armijo's test would stall.
    def ls_cond(c):
      t, n = c
      return ((decrement_sq >= 1.0 / 16) & (phi(beta + t * step) > f0 - 0.25 * t * decrement_sq)
              & (n < 60))

    t, _ = jax.lax.while_loop(ls_cond, lambda c: (0.5 * c[0], c[1] + 1), (t0, 0))
    return _Newton(beta + t * step, decrement_sq, s.iteration + 1)

  ones = jnp.ones((k,), cosine.dtype)
  init = _Newton(ones, jnp.asarray(jnp.inf, cosine.dtype), jnp.array(0))
  final = jax.lax.while_loop(cond, body, init)
  # One more step: the decrement test stops near sqrt(eps); Newton's quadratic
  # convergence takes the residual from there to rounding.
  beta = jnp.where(diverged(final.beta), final.beta, body(final).beta)
  return jnp.where(diverged(beta), 0.0, beta)


def fairgrad(alpha: float = 2.0) -> Weighting:
  """FairGrad: ``c = w`` with ``(M w)_k = w_k^(-1/alpha)``, ``w > 0``.

  Every task gains, ``<h_k, d> = w_k^(-1/alpha) > 0``: the allocation maximises
  ``sum_k u_alpha(<h_k, d>)`` over ``||d|| <= eps`` for the alpha-fair utility
  ``u_alpha``. ``alpha = 1`` is proportional fairness (Nash-MTL's equation);
  ``alpha -> inf`` approaches max-min fairness (MGDA's direction). Zero
  gradients get ``c_k = 0``; Pareto-stationary inputs (no solution) give ``c = 0``.

  Args:
    alpha: the fairness exponent, > 0 (the authors' experiments use 1 to 10;
      LibMTL's default is 1).

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Raises:
    ValueError: if ``alpha`` is not a positive finite number.

  Notes:
    The authors (and LibMTL) solve the equation with SciPy's ``least_squares``
    from ``w = 1/K`` with bounds ``w >= 0``; this is the same equation solved to
    machine precision by Newton steps. Its solution is invariant to a task's
    scale only for ``alpha = 1``. TorchJD's ``FairGrad(alpha)`` solves the same
    equation on its rows' Gramian the authors' way (no default ``alpha``; ``alpha = 0``
    there gives uniform weights ``1/K``, refused here); here the rows are ``h_k = w_k g_k``.

  References:
    Hao Ban, Kaiyi Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024.
    https://arxiv.org/abs/2402.15638

  Example:
    >>> c = fairgrad(2.0)(jnp.array([[1.0, 0.0], [0.0, 4.0]]))  # 4 w2 = w2^(-1/2)
    >>> [round(float(x), 4) for x in c]
    [1.0, 0.3969]
  """
  hyperparams.check_scalar("alpha", alpha, lower=0.0, lower_open=True)
  exponent = hyperparams.float_if_concrete(alpha)  # traced under inject_hyperparams + jit

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    cosine, norms = correlation(gram)  # absent tasks: a decoupled unit row
    a = jnp.where(norms > 0, jnp.where(norms > 0, norms, 1.0) ** (1.0 / exponent - 1.0), 1.0)
    beta = fair_allocation(cosine, a, exponent)
    return safe_divide(beta, norms)

  return not_differentiable(scale_covariant(weighting, -exponent / (1.0 + exponent)), "FairGrad")
