"""MGDA (Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018).

The update is the min-norm point of the convex hull of the task gradients::

    alpha* = argmin_{alpha in simplex} alpha^T M alpha,    d = sum_k alpha*_k h_k.

``d`` is zero exactly when the point is Pareto-stationary (0 is in the hull);
otherwise ``<h_k, d> >= ||d||^2 > 0`` for every task: no task is made worse
to first order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax import solvers
from came_grad_jax.weightings.base import Weighting, check_gram

Array = jax.Array


def _two_task_min_norm(gram: Array) -> Array:
  """Exact ``alpha*`` for K = 2: ``a = clip(<h2, h2 - h1> / ||h1 - h2||^2, 0, 1)``."""
  diff = jnp.array([1.0, -1.0], gram.dtype)
  denom = diff @ gram @ diff  # ||h1 - h2||^2
  same = solvers.is_negligible(denom, solvers.term_scale_sq(gram, diff), 2)
  a = jnp.clip((gram[1, 1] - gram[0, 1]) / jnp.where(same, 1.0, denom), 0.0, 1.0)
  a = jnp.where(same, 0.5, a)
  return jnp.stack([a, 1.0 - a])


def min_norm_point(gram: Array, *, max_iter: int = 500) -> Array:
  """``alpha* = argmin_{alpha in simplex} alpha^T M alpha``: the min-norm point's weights.

  ``alpha*`` is invariant to a positive rescaling of ``M``, so the problem is
  solved on ``M / trace(M)``: K = 2 in closed form, larger K with
  :func:`came_grad_jax.solvers.minimize_on_simplex` to a Frank-Wolfe gap of
  ``16 eps`` (the gap bounds ``||d - d*||^2`` relative to ``trace(M)``).

  Args:
    gram: Gram matrix ``M`` (K, K), float32 or wider.
    max_iter: iteration cap of the iterative solver (K > 2).

  Returns:
    ``alpha*`` (K,) on the simplex.

  Example:
    >>> min_norm_point(jnp.array([[1.0, -1.0], [-1.0, 4.0]])).round(4)  # (5/7, 2/7)
    Array([0.7143, 0.2857], dtype=float32)
  """
  k = gram.shape[0]
  if k == 1:
    return jnp.ones((1,), gram.dtype)
  trace = jnp.trace(gram)
  gram = gram / jnp.where(trace > 0, trace, 1.0)
  if k == 2:
    return _two_task_min_norm(gram)

  def value_and_grad(alpha):
    m_alpha = gram @ alpha
    return alpha @ m_alpha, 2.0 * m_alpha

  eps = jnp.finfo(gram.dtype).eps
  return solvers.minimize_on_simplex(
      value_and_grad, jnp.full((k,), 1.0 / k, gram.dtype), lipschitz0=2.0,
      gap_tol=16 * eps, max_iter=max_iter)


def mgda() -> Weighting:
  """MGDA: coefficients ``c = alpha*``, the min-norm point of the hull of the ``h_k``.

  ``d = sum_k alpha*_k h_k`` with ``alpha* = argmin_{alpha in simplex}
  ||sum_k alpha_k h_k||^2``; ``<h_k, d> >= ||d||^2`` for every k.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``, summing to 1.

  Example:
    >>> mgda()(jnp.array([[1.0, 0.0], [0.0, 4.0]])).round(4)  # d = 0.8 h1 + 0.2 h2
    Array([0.8, 0.2], dtype=float32)
  """

  def weighting(gram: Array) -> Array:
    return min_norm_point(check_gram(gram))

  return weighting
