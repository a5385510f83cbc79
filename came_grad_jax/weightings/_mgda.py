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

from came_grad_jax import _numerics as numerics
from came_grad_jax import _simplex as simplex
from came_grad_jax._active_set import nonnegative_qp
from came_grad_jax._faces import face_candidates, select_best
from came_grad_jax._numerics import correlation
from came_grad_jax.weightings._base import (
  Weighting,
  check_gram,
  not_differentiable,
  scale_covariant,
)

Array = jax.Array


def _two_task_min_norm(gram: Array) -> Array:
  """Exact ``alpha*`` for K = 2: ``(<h2, h2 - h1>, <h1, h1 - h2>) / ||h1 - h2||^2``, clipped.

  Both entries are formed directly (not one as ``1 - a``), so that an entry
  near 0 keeps its relative accuracy: it multiplies a gradient that may be
  1e12 times larger than the other.
  """
  diff = jnp.array([1.0, -1.0], gram.dtype)
  denom = diff @ gram @ diff  # ||h1 - h2||^2
  same = numerics.is_negligible(denom, numerics.term_scale_sq(gram, diff), 2)
  alpha = jnp.stack([gram[1, 1] - gram[0, 1], gram[0, 0] - gram[0, 1]]) / jnp.where(
      same, 1.0, denom)
  alpha = jnp.where(alpha[0] < 0, jnp.array([0.0, 1.0], gram.dtype), alpha)
  alpha = jnp.where(alpha[1] < 0, jnp.array([1.0, 0.0], gram.dtype), alpha)
  return jnp.where(same, 0.5, alpha)


def _min_norm_iterative(gram: Array, max_iter: int) -> Array:
  """``alpha*`` by :func:`~came_grad_jax._simplex.minimize_on_simplex` on ``M / trace(M)``.

  Its Frank-Wolfe gap is absolute (``16 eps`` of the trace), the right measure
  when the min-norm point is 0 (Pareto-stationary: the case it serves). The
  iterate is then polished by the exact min-norm point of the affine hull of
  the face it lies on (the S1 solver's "kink" candidate with ``b = 0``).
  """
  k = gram.shape[0]
  trace = jnp.trace(gram)
  gram = gram / jnp.where(trace > 0, trace, 1.0)

  def value_and_grad(alpha):
    m_alpha = gram @ alpha  # alpha: (K,) or N points as columns (K, N)
    return jnp.sum(alpha * m_alpha, axis=0), 2.0 * m_alpha

  gap_tol = 16 * jnp.finfo(gram.dtype).eps
  alpha = simplex.minimize_on_simplex(
      value_and_grad, jnp.full((k,), 1.0 / k, gram.dtype), lipschitz0=2.0,
      gap_tol=gap_tol, max_iter=max_iter)
  zeros = jnp.zeros((k,), gram.dtype)
  supports = jnp.stack([alpha > t * jnp.max(alpha) for t in (0.0, 1e-9, 1e-6)], axis=1)
  _, faces = face_candidates(gram, zeros, 0.0, supports)
  return select_best(value_and_grad, alpha, (faces,), 4 * gap_tol)


def _min_norm_by_duality(cosine: Array, norms: Array) -> tuple[Array, Array]:
  """``alpha*`` from the least-distance problem ``min ||x||^2 s.t. <h_k, x> >= 1``.

  Its dual is ``lambda* = argmin_{lambda >= 0} 1/2 lambda^T M lambda - 1^T lambda``
  and ``x* = sum_k lambda*_k h_k = d* / ||d*||^2``, so ``alpha* = lambda* /
  sum_k lambda*_k`` (Lawson & Hanson 1974, ch. 23). Solved exactly by
  :func:`~came_grad_jax._active_set.nonnegative_qp` in the variables
  ``z_k = ||h_k|| lambda_k`` (cosine matrix, linear term ``-1 / ||h_k||``), so a
  task 1e-6 the size of another keeps its relative accuracy. The problem is
  unbounded when 0 is in the hull; the flag says whether the solve certified
  optimality.
  """
  z, optimal = nonnegative_qp(cosine, -1.0 / norms)
  lam = z / norms
  total = jnp.sum(lam)
  alpha = lam / jnp.where(total > 0, total, 1.0)
  return alpha, optimal & (total > 0) & jnp.all(jnp.isfinite(alpha))


def min_norm_point(gram: Array, *, max_iter: int = 500) -> Array:
  """``alpha* = argmin_{alpha in simplex} alpha^T M alpha``: the min-norm point's weights.

  K = 2 in closed form. Larger K by duality (``_min_norm_by_duality``,
  exact); where that fails to certify optimality -- the min-norm point is 0 or
  indistinguishable from it -- by an iterative solve on the simplex. A zero
  gradient puts 0 in the hull: ``alpha*`` is then that task's vertex.

  Args:
    gram: Gram matrix ``M`` (K, K), float32 or wider.
    max_iter: iteration cap of the iterative fallback.

  Returns:
    ``alpha*`` (K,) on the simplex.

  Example:
    >>> min_norm_point(jnp.array([[1.0, -1.0], [-1.0, 4.0]])).round(4)  # (5/7, 2/7)
    Array([0.7143, 0.2857], dtype=float32)
  """
  k = gram.shape[0]
  if k == 1:
    return jnp.ones((1,), gram.dtype)
  if k == 2:
    return _two_task_min_norm(gram)
  cosine, norms = correlation(gram)
  absent = norms == 0
  alpha, optimal = _min_norm_by_duality(cosine, jnp.where(absent, 1.0, norms))
  alpha = jax.lax.cond(optimal & ~jnp.any(absent), lambda: alpha,
                       lambda: _min_norm_iterative(gram, max_iter))
  return jnp.where(jnp.any(absent), jax.nn.one_hot(jnp.argmax(absent), k, dtype=gram.dtype),
                   alpha)


def mgda() -> Weighting:
  """MGDA: coefficients ``c = alpha*``, the min-norm point of the hull of the ``h_k``.

  ``d = sum_k alpha*_k h_k`` with ``alpha* = argmin_{alpha in simplex}
  ||sum_k alpha_k h_k||^2``; ``<h_k, d> >= ||d||^2`` for every k.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``, summing to 1.

  Example:
    >>> c = mgda()(jnp.array([[1.0, 0.0], [0.0, 4.0]]))  # d = 0.8 h1 + 0.2 h2
    >>> [round(float(x), 4) for x in c]
    [0.8, 0.2]
  """

  def weighting(gram: Array) -> Array:
    return min_norm_point(check_gram(gram))

  return not_differentiable(scale_covariant(weighting), "MGDA", min_tasks=3)
