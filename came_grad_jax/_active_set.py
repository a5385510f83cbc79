"""Exact small quadratic programs on the non-negative orthant.

:func:`nonnegative_qp`: ``argmin_{z >= 0} 1/2 z^T a z + b^T z`` by the
Lawson-Hanson active-set method, inside ``jit``; best posed on the correlation
matrix (:func:`came_grad_jax._numerics.correlation`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import _numerics as numerics

Array = jax.Array


def _solve_on(a: Array, rhs: Array, passive: Array) -> Array:
  """``x`` with ``a_PP x_P = rhs_P`` on the passive set P and ``x = 0`` elsewhere."""
  both = passive[:, None] & passive[None, :]
  a_p = jnp.where(both, a, 0.0) + jnp.diag(jnp.where(passive, 0.0, 1.0))
  x = jnp.linalg.pinv(a_p, hermitian=True) @ jnp.where(passive, rhs, 0.0)
  return jnp.where(passive, x, 0.0)


def _descent(a: Array, b: Array, z: Array) -> tuple[Array, Array]:
  """The negative gradient ``-(a z + b)`` and the size of its terms ``|b| + |a| |z|``.

  A component below ``16 K eps`` times its terms' size is rounding noise
  (:func:`came_grad_jax._numerics.is_negligible`).
  """
  return -(a @ z + b), jnp.abs(b) + jnp.abs(a) @ jnp.abs(z)


def _entering(a: Array, b: Array, z: Array, passive: Array) -> Array:
  """Coordinates outside P whose negative gradient is positive beyond rounding."""
  descent, scale = _descent(a, b, z)
  return ~passive & (descent > 0) & ~numerics.is_negligible(descent, scale, a.shape[0])


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
  flat = numerics.is_negligible(jnp.abs(descent), scale, k)
  optimal = jnp.all(jnp.where(z > 0, flat, (descent <= 0) | flat))
  return z, optimal
