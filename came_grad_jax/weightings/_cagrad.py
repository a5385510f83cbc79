"""CAGrad (Liu et al., NeurIPS 2021) and its dual, the solver behind CAME-Grad's S1.

The direction-rectification problem ``max_u min_k <h_k, u>`` s.t.
``||u - mu|| <= c ||mu||`` is solved in its dual on the simplex::

    alpha* = argmin_{alpha in simplex}  alpha^T M 1/K + r sqrt(alpha^T M alpha)

with ``r = c ||mu||``; then ``u = mu + (r / ||h_alpha*||) h_alpha*``. K = 2 in
closed form; K <= ``SMALL_K`` by the closed-form candidates of every face of
the simplex; beyond, by accelerated projected gradient, then the exact face
polish (see ``docs/design.md``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._faces import all_supports, face_candidates, refine_support, select_best
from came_grad_jax._numerics import (
  SMALL_K,
  is_negligible,
  norm_of,
  per_task,
  safe_divide,
  task_sum,
  term_scale_sq,
)
from came_grad_jax._simplex import minimize_on_simplex
from came_grad_jax.weightings._base import Weighting, check_gram, scale_covariant
from came_grad_jax.weightings._upgrad import dual_cone_weights

Array = jax.Array


def _dual_value_and_grad(gram: Array, b: Array, radius: Array):
  """``f(alpha) = <b, alpha> + r sqrt(alpha^T M alpha)`` and its gradient.

  ``alpha`` is one point (K,) or N points as columns (K, N).
  """
  k = gram.shape[0]

  def value_and_grad(alpha):
    m_alpha = gram @ alpha
    sq = task_sum(alpha * m_alpha)
    zero = is_negligible(sq, term_scale_sq(gram, alpha), k)
    norm = jnp.sqrt(jnp.maximum(sq, 0.0))
    safe = jnp.where(zero, 1.0, norm)
    b_col = per_task(b, alpha)
    grad = b_col + jnp.where(zero, 0.0, radius / safe) * m_alpha
    return task_sum(b_col * alpha) + radius * norm, grad

  return value_and_grad


def _two_task_dual(gram: Array, b: Array, radius: Array) -> Array:
  """Exact minimiser of the dual for K = 2, alpha = (a, 1 - a).

  With ``q(a) = A a^2 + 2 B a + C`` (``A = M11 - 2 M12 + M22``,
  ``B = M12 - M22``, ``C = M22``) and ``delta = b1 - b2``, the stationary point
  of ``delta a + r sqrt(q(a))`` has ``y = A a + B`` with
  ``y^2 (r^2 A - delta^2) = delta^2 (A C - B^2)`` and ``sign(y) = -sign(delta)``.
  The objective is convex in a, so the best of {0, 1, clip(stationary)} is the
  minimiser.
  """
  a_coef = gram[0, 0] - 2 * gram[0, 1] + gram[1, 1]
  b_coef = gram[0, 1] - gram[1, 1]
  det = jnp.maximum(gram[0, 0] * gram[1, 1] - gram[0, 1] ** 2, 0.0)
  delta = b[0] - b[1]
  denom = radius**2 * a_coef - delta**2
  interior = denom > 0
  y = -jnp.sign(delta) * jnp.abs(delta) * jnp.sqrt(
      safe_divide(det, denom, where=interior))
  safe_a = jnp.where(a_coef > 0, a_coef, 1.0)
  a_star = jnp.where(a_coef > 0, (y - b_coef) / safe_a, 0.5)
  candidates = jnp.stack([jnp.zeros_like(delta), jnp.ones_like(delta),
                          jnp.clip(a_star, 0.0, 1.0)])
  alphas = jnp.stack([candidates, 1.0 - candidates])
  values, _ = _dual_value_and_grad(gram, b, radius)(alphas)
  return alphas[:, jnp.argmin(values)]


@functools.partial(jax.jit, static_argnames=("max_iter",))
def conflict_averse_dual(gram: Array, radius_scale: Array | float,
                         *, max_iter: int = 200) -> Array:
  """Solve S1's dual: ``argmin_{alpha in simplex} alpha^T M 1/K + r sqrt(alpha^T M alpha)``.

  Here ``r = radius_scale * ||mu||`` and ``mu = (1/K) sum_k h_k``, both read
  off the Gram matrix ``M``. The minimiser is invariant to a positive rescaling
  of ``M``, so the problem is solved on ``M / trace(M)``. K = 2 in closed form;
  3 <= K <= ``SMALL_K`` by the closed-form candidates of every face
  of the simplex (:func:`face_candidates`), the best feasible one winning; larger
  K iteratively to a Frank-Wolfe gap of ``sqrt(eps)`` of the objective
  (or ``max_iter``), enough to find the optimal face, then polished by the
  closed-form minimisers on that face (:func:`face_candidates`, exact where the
  solution is smooth and where it sits on the kink ``h_alpha = 0``), the face
  corrected by active-set steps (:func:`_refine_support`).

  Args:
    gram: the Gram matrix ``M_ij = <h_i, h_j>``, (K, K), float32 or wider.
    radius_scale: rho >= 0, the conflict radius relative to ``||mu||``.
    max_iter: iteration cap of the iterative solver (K > 2).

  Returns:
    alpha*, (K,), on the simplex.

  Example:
    >>> m = jnp.array([[1.0, -0.5], [-0.5, 1.0]])
    >>> conflict_averse_dual(m, 0.5).round(3)
    Array([0.5, 0.5], dtype=float32)
  """
  k = gram.shape[0]
  # Sums over K written with task_sum: fused adds, not a reduction kernel each.
  trace = task_sum(jnp.diagonal(gram))
  gram = gram / jnp.where(trace > 0, trace, 1.0)
  ones = jnp.ones((k,), gram.dtype)
  b = task_sum(gram) / k  # M 1 / K (M is symmetric)
  sq_mean = task_sum(b) / k
  mean_is_zero = is_negligible(sq_mean, term_scale_sq(gram, ones / k), k)
  radius = jnp.where(mean_is_zero, 0.0,
                     radius_scale * jnp.sqrt(jnp.maximum(sq_mean, 0.0)))
  if k == 1:
    return ones
  if k == 2:
    return _two_task_dual(gram, b, radius)
  return _enumerated_or_iterative(gram, b, radius, max_iter)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _enumerated_or_iterative(gram: Array, b: Array, radius: Array, max_iter: int) -> Array:
  """The K >= 3 solve: face enumeration (K <= SMALL_K) or the iterative path.

  Not differentiable: its candidates include infeasible faces whose values are
  masked, and the iterative path is a ``while_loop``. Its JVP rule raises a
  clear error instead of returning NaN (K = 2, in closed form, differentiates).
  """
  k = gram.shape[0]
  ones = jnp.ones((k,), gram.dtype)
  value_and_grad = _dual_value_and_grad(gram, b, radius)
  scale = jnp.max(jnp.abs(b)) + radius * jnp.sqrt(jnp.max(jnp.diagonal(gram)))
  eps = jnp.finfo(gram.dtype).eps
  if k <= SMALL_K:
    # Every face's closed-form candidates at once: the optimum is one of them.
    candidates = face_candidates(gram, b, radius, all_supports(k))
    return select_best(value_and_grad, ones / k, candidates, 64 * eps * scale)
  alpha = minimize_on_simplex(value_and_grad, ones / k, lipschitz0=1.0 + radius,
                              gap_tol=eps * scale, gap_rtol=jnp.sqrt(eps),
                              max_iter=max_iter)
  supports = jnp.stack([alpha > 0, alpha > 1e-6 * jnp.max(alpha),
                        refine_support(value_and_grad, gram, b, radius, alpha > 0)], axis=1)
  candidates = face_candidates(gram, b, radius, supports)
  return select_best(value_and_grad, alpha, candidates, 64 * eps * scale)


@_enumerated_or_iterative.defjvp
def _no_derivative(max_iter, primals, tangents):
  del max_iter, primals, tangents
  raise NotImplementedError(
      "differentiating through the conflict-averse dual (CAGrad, CAME-Grad's S1) is "
      "supported for K = 2 tasks only (closed form); for K >= 3 the solve is a "
      "combinatorial/iterative search. Wrap the update in jax.lax.stop_gradient if you "
      "differentiate through the optimizer step.")


def conflict_averse_direction(gram: Array, radius_scale: jax.typing.ArrayLike) -> Array:
  """Coefficients ``a = 1/K + lambda alpha*`` of ``u = mu + lambda h_alpha*``.

  ``lambda = c ||mu|| / ||h_alpha*||``, ``alpha*`` from :func:`conflict_averse_dual`.
  ``u`` maximises ``min_k <h_k, u>`` over the ball ``||u - mu|| <= c ||mu||``.
  Where ``h_alpha*`` vanishes (Pareto-stationary tasks) the optimum value is 0,
  reached by every ``u`` of the ball with ``<h_k, u> >= 0`` for all k; the one
  closest to ``mu`` is returned: ``pi_C(mu)``, the projection onto the dual cone
  ``C`` (:func:`~came_grad_jax.weightings.dual_cone_weights`; 0 when the tasks
  are strongly stationary, ``v^T H = 0`` for some ``v > 0``).

  Args:
    gram: Gram matrix of the task-weighted gradients, (K, K).
    radius_scale: ``c >= 0``, the radius relative to ``||mu||``.

  Returns:
    ``a`` (K,), in float32 or wider.

  Example:
    >>> conflict_averse_direction(jnp.eye(2), 0.0)
    Array([0.5, 0.5], dtype=float32)
  """
  gram = check_gram(gram)
  k = gram.shape[0]
  alpha = conflict_averse_dual(gram, radius_scale)
  ones = jnp.ones((k,), gram.dtype)
  radius = radius_scale * norm_of(gram, ones) / k
  h_alpha_norm = norm_of(gram, alpha)
  coeffs = ones / k + safe_divide(radius, h_alpha_norm) * alpha
  # Pareto-stationary (h_alpha* = 0 with r > 0): the optimum value is 0 and every u of
  # the ball with <h_k, u> >= 0 for all k is optimal. The one closest to mu is the
  # projection of mu onto that dual cone, which lies in the ball (strong duality).
  # Solved only there (one active-set NNLS); not differentiated (a kink of the problem).
  stationary = (h_alpha_norm == 0) & (radius > 0)
  frozen = jax.lax.stop_gradient(gram)
  return jax.lax.cond(stationary, lambda: dual_cone_weights(frozen, ones / k).astype(coeffs.dtype),
                      lambda: coeffs)


def cagrad(c: float = 0.4, *, rescale: bool = True) -> Weighting:
  """CAGrad: ``d = mu + c ||mu|| h_alpha* / ||h_alpha*||``, divided by ``1 + c^2``.

  ``mu = (1/K) sum_k h_k`` and ``alpha*`` solves the dual above
  (``conflict_averse_direction``); ``rescale`` applies the ``1 / (1 + c^2)``
  factor of the authors' code. CAME-Grad's S1 is this direction with
  ``c = rho`` and no rescale.

  Args:
    c: conflict radius relative to ``||mu||``, >= 0.
    rescale: divide by ``1 + c^2`` as the authors' code does by default.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Raises:
    ValueError: if ``c`` is negative or not finite.
    TypeError: if ``rescale`` is not a bool.

  References:
    Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021. https://arxiv.org/abs/2110.14048

  Example:
    >>> cagrad(0.4)(jnp.eye(3)).shape
    (3,)
  """
  hyperparams.check_scalar("c", c, lower=0.0)
  factor = 1.0 / (1.0 + c**2) if hyperparams.check_bool("rescale", rescale) else 1.0

  def weighting(gram: Array) -> Array:
    return factor * conflict_averse_direction(gram, c)

  return scale_covariant(weighting)
