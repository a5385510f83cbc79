"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024).

Each task gradient is projected onto the dual cone of all of them,
``C = {x : <h_k, x> >= 0 for every k}``, and the projections are averaged::

    d = (1/K) sum_i pi_C(h_i).

Projections are computed in weights (:func:`dual_cone_weights`): by Moreau's
decomposition, ``pi_C(sum_k u_k h_k) = sum_k (u_k + lambda*_k) h_k`` with
``lambda* = argmin_{lambda >= 0} (u + lambda)^T M (u + lambda)``, a non-negative
least-squares problem in K variables, solved exactly on the device by the
Lawson-Hanson active-set method (:func:`nonnegative_qp`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import solvers
from came_grad_jax.weightings.base import Weighting, check_gram

Array = jax.Array


def correlation(gram: Array) -> tuple[Array, Array]:
  """``(C, n)``: the task norms ``n_k = ||h_k||`` and ``C = D^-1 M D^-1`` (``D = diag n``).

  ``C`` has a unit diagonal; a zero gradient gets a decoupled unit row and
  column, so that ``C`` stays well conditioned whatever the tasks' scales.
  Weightings whose problem is invariant under a positive diagonal rescaling
  solve it on ``C`` and map back with ``n``.

  Example:
    >>> c, n = correlation(jnp.array([[4.0, -2.0], [-2.0, 0.0]]))
    >>> c, n
    (Array([[1., 0.],
           [0., 1.]], dtype=float32), Array([2., 0.], dtype=float32))
  """
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
  present = norms > 0
  safe = jnp.where(present, norms, 1.0)
  cosine = jnp.where(jnp.outer(present, present), gram / jnp.outer(safe, safe),
                     jnp.eye(gram.shape[0], dtype=gram.dtype))
  return cosine, norms


def _solve_on(a: Array, rhs: Array, passive: Array) -> Array:
  """``x`` with ``a_PP x_P = rhs_P`` on the passive set P and ``x = 0`` elsewhere."""
  both = passive[:, None] & passive[None, :]
  a_p = jnp.where(both, a, 0.0) + jnp.diag(jnp.where(passive, 0.0, 1.0))
  x = jnp.linalg.pinv(a_p, hermitian=True) @ jnp.where(passive, rhs, 0.0)
  return jnp.where(passive, x, 0.0)


def _descent(a: Array, b: Array, z: Array) -> tuple[Array, Array]:
  """The negative gradient ``-(a z + b)`` and the size of its terms ``|b| + |a| |z|``.

  A component below ``16 K eps`` times its terms' size is rounding noise
  (:func:`came_grad_jax.solvers.is_negligible`).
  """
  return -(a @ z + b), jnp.abs(b) + jnp.abs(a) @ jnp.abs(z)


def _entering(a: Array, b: Array, z: Array, passive: Array) -> Array:
  """Coordinates outside P whose negative gradient is positive beyond rounding."""
  descent, scale = _descent(a, b, z)
  return ~passive & (descent > 0) & ~solvers.is_negligible(descent, scale, a.shape[0])


class _ActiveSet(NamedTuple):
  z: Array
  passive: Array
  iteration: Array


def _restore_feasibility(a: Array, rhs: Array, z: Array, passive: Array):
  """Lawson-Hanson inner loop: step from ``z`` toward the subproblem's minimiser, dropping
  passive coordinates that would turn non-positive, until that minimiser is feasible."""
  k = a.shape[0]

  def cond(carry):
    _, passive, s, n = carry
    return jnp.any(passive & (s <= 0)) & (n < k)

  def body(carry):
    z, passive, s, n = carry
    blocking = passive & (s <= 0)
    gap = z - s
    ratio = jnp.where(blocking, z / jnp.where(gap > 0, gap, 1.0), jnp.inf)
    j = jnp.argmin(ratio)
    z = z + ratio[j] * (s - z)
    passive = passive & (z > 0) & (jnp.arange(k) != j)
    z = jnp.where(passive, z, 0.0)
    return z, passive, _solve_on(a, rhs, passive), n + 1

  s = _solve_on(a, rhs, passive)
  _, passive, s, _ = jax.lax.while_loop(cond, body, (z, passive, s, jnp.array(0)))
  return jnp.maximum(s, 0.0), passive


def nonnegative_qp(a: Array, b: Array, *, max_iter: int | None = None) -> tuple[Array, Array]:
  """``argmin_{z >= 0} 1/2 z^T a z + b^T z`` by the active-set method of Lawson & Hanson (1974).

  Exact (up to rounding) after finitely many active-set changes; every
  subproblem is a linear solve on the passive set. Best conditioned when ``a``
  has a unit diagonal (rescale ``z`` by a positive diagonal, under which the
  orthant is invariant).

  Args:
    a: (K, K) positive semi-definite.
    b: (K,) linear term.
    max_iter: cap on the outer iterations (default 3K).

  Returns:
    ``(z, optimal)``: the minimiser, and whether the KKT conditions hold to
    rounding (False when the cap was hit, e.g. on an unbounded problem).

  Example:
    >>> nonnegative_qp(jnp.eye(2), jnp.array([-1.0, 2.0]))[0]
    Array([1., 0.], dtype=float32)
  """
  k = a.shape[0]
  max_iter = 3 * k if max_iter is None else max_iter
  rhs = -b

  def cond(s: _ActiveSet):
    return jnp.any(_entering(a, b, s.z, s.passive)) & (s.iteration < max_iter)

  def body(s: _ActiveSet):
    descent = jnp.where(_entering(a, b, s.z, s.passive), _descent(a, b, s.z)[0], -jnp.inf)
    passive = s.passive.at[jnp.argmax(descent)].set(True)
    z, passive = _restore_feasibility(a, rhs, s.z, passive)
    return _ActiveSet(z, passive, s.iteration + 1)

  init = _ActiveSet(jnp.zeros((k,), a.dtype), jnp.zeros((k,), bool), jnp.array(0))
  z = jax.lax.while_loop(cond, body, init).z
  descent, scale = _descent(a, b, z)
  flat = solvers.is_negligible(jnp.abs(descent), scale, k)
  optimal = jnp.all(jnp.where(z > 0, flat, (descent <= 0) | flat))
  return z, optimal


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
    >>> w = dual_cone_weights(m, jnp.array([1.0, 0.0]))  # h1 + h2 / 2 is orthogonal to h2
    >>> [round(float(x), 4) for x in w]
    [1.0, 0.5]
  """
  cosine, norms = correlation(gram)
  safe = jnp.where(norms > 0, norms, 1.0)
  lam, _ = nonnegative_qp(cosine, cosine @ (u * safe))
  return jnp.where(norms > 0, u + lam / safe, u)


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
