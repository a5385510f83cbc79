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
  """Exact ``alpha*`` for K = 2: ``(<h2, h2 - h1>, <h1, h1 - h2>) / ||h1 - h2||^2``, clipped.

  Both entries are formed directly (not one as ``1 - a``), so that an entry
  near 0 keeps its relative accuracy: it multiplies a gradient that may be
  1e12 times larger than the other.
  """
  diff = jnp.array([1.0, -1.0], gram.dtype)
  denom = diff @ gram @ diff  # ||h1 - h2||^2
  same = solvers.is_negligible(denom, solvers.term_scale_sq(gram, diff), 2)
  alpha = jnp.stack([gram[1, 1] - gram[0, 1], gram[0, 0] - gram[0, 1]]) / jnp.where(
      same, 1.0, denom)
  alpha = jnp.where(alpha[0] < 0, jnp.array([0.0, 1.0], gram.dtype), alpha)
  alpha = jnp.where(alpha[1] < 0, jnp.array([1.0, 0.0], gram.dtype), alpha)
  return jnp.where(same, 0.5, alpha)


def min_norm_point(gram: Array, *, max_iter: int = 500) -> Array:
  """``alpha* = argmin_{alpha in simplex} alpha^T M alpha``: the min-norm point's weights.

  ``alpha*`` is invariant to a positive rescaling of ``M``, so the problem is
  solved on ``M / trace(M)``: K = 2 in closed form, larger K with
  :func:`came_grad_jax.solvers.minimize_on_simplex` to a Frank-Wolfe gap of
  ``16 eps``, then polished by the exact min-norm point of the affine hull of
  the face it lies on (solved in correlation variables, so that a task 1e-6
  the size of another keeps its relative accuracy).

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

  gap_tol = 16 * jnp.finfo(gram.dtype).eps
  alpha = solvers.minimize_on_simplex(
      value_and_grad, jnp.full((k,), 1.0 / k, gram.dtype), lipschitz0=2.0,
      gap_tol=gap_tol, max_iter=max_iter)
  # Polish: the exact min-norm point of the affine hull of the face alpha lies on
  # (the S1 solver's "kink" candidate with b = 0, r = 0), in correlation variables.
  zeros = jnp.zeros((k,), gram.dtype)
  faces = jax.vmap(lambda t: solvers._face_candidates(gram, zeros, 0.0, alpha, t)[1])(
      jnp.array([0.0, 1e-9, 1e-6], gram.dtype))
  return solvers._best_of(value_and_grad, alpha, faces, 4 * gap_tol)


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
