"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024).

Each task gradient is projected onto the dual cone of all of them,
``C = {x : <h_k, x> >= 0 for every k}``, and the projections are averaged::

    d = (1/K) sum_i pi_C(h_i).

Projections are computed in weights (:func:`dual_cone_weights`): by Moreau's
decomposition, ``pi_C(sum_k u_k h_k) = sum_k (u_k + lambda*_k) h_k`` with
``lambda* = argmin_{lambda >= 0} (u + lambda)^T M (u + lambda)``, a non-negative
least-squares problem in K variables, solved exactly on the device by the
Lawson-Hanson active-set method.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import solvers
from came_grad_jax.weightings.base import Weighting, check_gram

Array = jax.Array


def _solve_on(a: Array, rhs: Array, passive: Array) -> Array:
  """``x`` with ``a_PP x_P = rhs_P`` on the passive set P and ``x = 0`` elsewhere."""
  both = passive[:, None] & passive[None, :]
  a_p = jnp.where(both, a, 0.0) + jnp.diag(jnp.where(passive, 0.0, 1.0))
  x = jnp.linalg.pinv(a_p, hermitian=True) @ jnp.where(passive, rhs, 0.0)
  return jnp.where(passive, x, 0.0)


def _entering(a: Array, u: Array, lam: Array, passive: Array) -> Array:
  """Coordinates outside P whose negative gradient ``-(a (u + lam))_j`` is positive, beyond rounding.

  With unit-norm vectors, ``(a x)_j = <h_j, sum_i x_i h_i>`` carries a rounding
  error of order ``K eps sum_i |x_i|``: that is the scale it is compared with.
  """
  x = u + lam
  descent = -(a @ x)
  noise = solvers.is_negligible(descent, jnp.sum(jnp.abs(x)), a.shape[0])
  return ~passive & (descent > 0) & ~noise


class _ActiveSet(NamedTuple):
  lam: Array
  passive: Array
  iteration: Array


def _restore_feasibility(a: Array, rhs: Array, lam: Array, passive: Array):
  """Lawson-Hanson inner loop: step from ``lam`` toward the subproblem's minimiser, dropping
  passive coordinates that would turn non-positive, until that minimiser is feasible."""
  k = a.shape[0]

  def cond(carry):
    _, passive, s, n = carry
    return jnp.any(passive & (s <= 0)) & (n < k)

  def body(carry):
    lam, passive, s, n = carry
    blocking = passive & (s <= 0)
    gap = lam - s
    ratio = jnp.where(blocking, lam / jnp.where(gap > 0, gap, 1.0), jnp.inf)
    j = jnp.argmin(ratio)
    lam = lam + ratio[j] * (s - lam)
    passive = passive & (lam > 0) & (jnp.arange(k) != j)
    lam = jnp.where(passive, lam, 0.0)
    return lam, passive, _solve_on(a, rhs, passive), n + 1

  s = _solve_on(a, rhs, passive)
  _, passive, s, _ = jax.lax.while_loop(cond, body, (lam, passive, s, jnp.array(0)))
  return jnp.maximum(s, 0.0), passive


def _nonnegative_least_squares(a: Array, u: Array, max_iter: int) -> Array:
  """``argmin_{lam >= 0} (u + lam)^T a (u + lam)`` by Lawson & Hanson (1974), ch. 23."""
  rhs = -(a @ u)

  def cond(s: _ActiveSet):
    return jnp.any(_entering(a, u, s.lam, s.passive)) & (s.iteration < max_iter)

  def body(s: _ActiveSet):
    descent = jnp.where(_entering(a, u, s.lam, s.passive), -(a @ (u + s.lam)), -jnp.inf)
    passive = s.passive.at[jnp.argmax(descent)].set(True)
    lam, passive = _restore_feasibility(a, rhs, s.lam, passive)
    return _ActiveSet(lam, passive, s.iteration + 1)

  k = a.shape[0]
  init = _ActiveSet(jnp.zeros((k,), a.dtype), jnp.zeros((k,), bool), jnp.array(0))
  return jax.lax.while_loop(cond, body, init).lam


def dual_cone_weights(gram: Array, u: Array) -> Array:
  """Weights ``w`` of the projection of ``sum_k u_k h_k`` onto the dual cone of the ``h_k``.

  ``w = u + lambda*``, ``lambda* = argmin_{lambda >= 0} (u + lambda)^T M
  (u + lambda)``, so that ``sum_k w_k h_k = pi_C(sum_k u_k h_k)`` with
  ``C = {x : <h_k, x> >= 0 for all k}``. The non-negative orthant is invariant
  under a positive diagonal rescaling, so the problem is solved on the cosine
  matrix ``D^-1 M D^-1`` (``D = diag ||h_k||``): a task 1e-6 the size of
  another is treated like any other. Zero gradients get ``lambda*_k = 0``.

  Args:
    gram: Gram matrix ``M`` (K, K), float32 or wider.
    u: weights (K,) of the vector to project.

  Returns:
    ``w`` (K,), ``w >= u``.

  Example:
    >>> m = jnp.array([[1.0, -1.0], [-1.0, 2.0]])  # <h1, h2> < 0
    >>> dual_cone_weights(m, jnp.array([1.0, 0.0]))  # h1 + h2 is orthogonal to h1
    Array([1., 1.], dtype=float32)
  """
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
  safe = jnp.where(norms > 0, norms, 1.0)
  cosine = gram / jnp.outer(safe, safe)
  lam = _nonnegative_least_squares(cosine, u * safe, max_iter=3 * gram.shape[0])
  return u + lam / safe


def upgrad() -> Weighting:
  """UPGrad: ``c = (1/K) sum_i w^(i)``, ``w^(i)`` the dual-cone projection weights of ``h_i``.

  ``d = (1/K) sum_i pi_C(h_i)`` with ``C = {x : <h_k, x> >= 0 for all k}``, so
  ``<h_k, d> >= 0`` for every k (non-conflicting); ``d`` is the mean gradient
  when no pair of tasks conflicts.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Example:
    >>> upgrad()(jnp.array([[1.0, -1.0], [-1.0, 2.0]]))
    Array([1. , 0.75], dtype=float32)
  """

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    per_task = jax.vmap(lambda u: dual_cone_weights(gram, u))(jnp.eye(k, dtype=gram.dtype) / k)
    return jnp.sum(per_task, axis=0)

  return weighting
