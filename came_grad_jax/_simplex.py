"""Minimising a smooth convex function over the probability simplex, inside ``jit``.

:func:`project_simplex` (Euclidean projection) and :func:`minimize_on_simplex`
(restarted FISTA stopped by the Frank-Wolfe gap, :func:`frank_wolfe_gap`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax._numerics import task_min, task_sum

Array = jax.Array


def project_simplex(v: Array) -> Array:
  """Euclidean projection of ``v`` (K,) onto the probability simplex.

  ``argmin_{x >= 0, sum x = 1} ||x - v||`` by the sort-and-threshold rule
  (Held et al. 1974; Duchi et al. 2008).

  Example:
    >>> project_simplex(jnp.array([2.0, 0.0]))
    Array([1., 0.], dtype=float32)
  """
  k = v.shape[-1]
  # Shifted so that its largest entry is 0 (the projection does not change): the first
  # sorted entry then always passes the test below, even when the others are 1e8 below
  # it and ``u_1 - (u_1 - 1)`` would round to 0 (no threshold found: inf).
  v = v - jnp.max(v)
  u = jnp.sort(v)[::-1]
  cssv = jnp.cumsum(u) - 1.0
  ind = jnp.arange(1, k + 1, dtype=v.dtype)
  cond = u - cssv / ind > 0
  rho = jnp.sum(cond)
  theta = cssv[rho - 1] / rho.astype(v.dtype)
  return jnp.maximum(v - theta, 0.0)


class _FistaState(NamedTuple):
  x: Array
  y: Array
  t: Array
  lipschitz: Array
  f_x: Array
  gap: Array
  iteration: Array


def frank_wolfe_gap(x: Array, grad: Array) -> Array:
  """``<grad, x> - min_k grad_k``: an upper bound on ``f(x) - min f`` on the simplex.

  ``x`` and ``grad`` are one point (K,) or N points as columns (K, N).
  """
  return task_sum(x * grad) - task_min(grad)


def minimize_on_simplex(
    value_and_grad: Callable[[Array], tuple[Array, Array]],
    x0: Array,
    *,
    lipschitz0: Array | float = 1.0,
    gap_tol: jax.typing.ArrayLike,
    gap_rtol: Array | float = 0.0,
    max_iter: int = 500,
) -> Array:
  """Minimise a smooth convex function over the simplex with restarted FISTA.

  Accelerated projected gradient (Beck & Teboulle 2009) with backtracking on
  the step size and function-value restart (O'Donoghue & Candes 2015). Stops
  when the Frank-Wolfe gap, which bounds the objective gap, is at most
  ``gap_tol + gap_rtol |f(x)|``, or after ``max_iter`` iterations.

  Args:
    value_and_grad: ``x -> (f(x), grad f(x))`` for x in the simplex.
    x0: a starting point in the simplex, (K,).
    lipschitz0: initial guess of the gradient's Lipschitz constant.
    gap_tol: absolute tolerance on the Frank-Wolfe gap.
    gap_rtol: tolerance on the gap relative to the current objective value.
    max_iter: iteration cap (keeps the loop bounded under ``jit``).

  Returns:
    The approximate minimiser, (K,).
  """
  dtype = x0.dtype
  f0, g0 = value_and_grad(x0)

  def backtrack(y, f_y, g_y, lipschitz):
    def step(lip):
      x_new = project_simplex(y - g_y / lip)
      f_new, _ = value_and_grad(x_new)
      diff = x_new - y
      bound = f_y + jnp.dot(g_y, diff) + 0.5 * lip * jnp.dot(diff, diff)
      slack = 8 * jnp.finfo(dtype).eps * (jnp.abs(f_y) + jnp.abs(f_new))
      return x_new, f_new, f_new <= bound + slack

    def cond(carry):
      _, _, ok, n = carry
      return jnp.logical_and(~ok, n < 60)

    def body(carry):
      lip, _, _, n = carry
      lip = 2.0 * lip
      x_new, f_new, ok = step(lip)
      return lip, (x_new, f_new), ok, n + 1

    x_new, f_new, ok = step(lipschitz)
    lip, (x_new, f_new), _, _ = jax.lax.while_loop(
        cond, body, (lipschitz, (x_new, f_new), ok, jnp.array(0)))
    return x_new, f_new, lip

  def cond(s: _FistaState):
    return jnp.logical_and(s.gap > gap_tol + gap_rtol * jnp.abs(s.f_x),
                           s.iteration < max_iter)

  def body(s: _FistaState):
    f_y, g_y = value_and_grad(s.y)
    x_new, f_new, lip = backtrack(s.y, f_y, g_y, s.lipschitz)
    restart = f_new > s.f_x
    # On restart keep the previous iterate and drop the momentum.
    x_new = jnp.where(restart, s.x, x_new)
    f_new = jnp.where(restart, s.f_x, f_new)
    t_new = jnp.where(restart, 1.0, 0.5 * (1 + jnp.sqrt(1 + 4 * s.t**2)))
    y_new = jnp.where(restart, s.x, x_new + ((s.t - 1) / t_new) * (x_new - s.x))
    _, g_new = value_and_grad(x_new)
    gap = frank_wolfe_gap(x_new, g_new)
    return _FistaState(x_new, y_new, t_new.astype(dtype), 0.9 * lip, f_new, gap,
                       s.iteration + 1)

  init = _FistaState(
      x=x0, y=x0, t=jnp.ones([], dtype),
      lipschitz=jnp.asarray(lipschitz0, dtype), f_x=f0,
      gap=frank_wolfe_gap(x0, g0), iteration=jnp.zeros([], jnp.int32))
  return jax.lax.while_loop(cond, body, init).x
