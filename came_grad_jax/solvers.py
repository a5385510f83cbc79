"""On-device solvers for the small K-dimensional problems behind the weightings.

Everything here runs inside ``jit`` (``jax.lax.while_loop``, no host callbacks)
and works on K-vectors and K x K Gram matrices only, never on gradients.

The main entry point is :func:`conflict_averse_dual`, the dual of CAGrad's
direction-rectification problem (stage S1 of CAME-Grad)::

    alpha* = argmin_{alpha in simplex}  alpha^T M 1/K + r sqrt(alpha^T M alpha)

with ``r = rho ||mu||``. K = 2 is solved in closed form; up to
``MAX_ENUMERATED_TASKS`` tasks by the closed-form minimisers of every face of the
simplex (:func:`face_candidates`); beyond, by an accelerated projected-gradient
method (FISTA with backtracking and adaptive restart, stopped by its
Frank-Wolfe gap) whose face is then corrected by active-set steps and solved in
closed form.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from came_grad_jax.simplex import (UNROLL_TASKS, frank_wolfe_gap, minimize_on_simplex,
                                   task_min, task_sum)

Array = jax.Array

#: Up to this many tasks S1's dual is solved by enumerating the faces of the
#: simplex (closed form on each, 2^K - 1 faces in one batch): exact, and more
#: accurate in float32 than the iterative solver used above it.
MAX_ENUMERATED_TASKS = 8

#: Multiple of ``K * eps`` below which a squared norm read off a Gram matrix is
#: indistinguishable from rounding noise of the sum it came from.
NOISE_FACTOR = 16.0


def compute_dtype(dtype) -> jnp.dtype:
  """The dtype the K x K algebra runs in: float32 or wider, whatever the input."""
  return jnp.promote_types(dtype, jnp.float32)


def is_negligible(sq_norm: Array, scale_sq: Array, num_tasks: int) -> Array:
  """Whether ``sq_norm`` is rounding noise of a sum whose terms have size ``scale_sq``.

  A squared norm ``||sum_k a_k h_k||^2 = a^T M a`` is compared with
  ``(sum_k |a_k| ||h_k||)^2``, the size of the terms it was summed from; never
  with the scale of the whole Gram matrix, so a task 1e-6 the size of another
  is still seen.

  Args:
    sq_norm: the computed squared norm.
    scale_sq: the squared sum of the magnitudes it was computed from (>= 0).
    num_tasks: K, the number of terms.

  Returns:
    A boolean array, True where the norm must be treated as zero.
  """
  eps = jnp.finfo(jnp.result_type(sq_norm)).eps
  return sq_norm <= NOISE_FACTOR * num_tasks * eps * scale_sq


def _per_task(v: Array, like: Array) -> Array:
  """A (K,) vector shaped to broadcast against ``like``, (K,) or (K, N) columns."""
  return v.reshape(v.shape + (1,) * (like.ndim - 1))


def term_scale_sq(gram: Array, coeffs: Array) -> Array:
  """``(sum_k |a_k| ||h_k||)^2``: the squared size of the terms of ``sum_k a_k h_k``.

  ``coeffs`` is one point (K,) or N points as columns (K, N).
  """
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
  return task_sum(jnp.abs(coeffs) * _per_task(norms, coeffs)) ** 2


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


def norm_of(gram: Array, coeffs: Array) -> Array:
  """``||sum_k c_k h_k||`` read off ``M``; exactly 0 where it is rounding noise.

  Example:
    >>> norm_of(jnp.eye(2), jnp.array([3.0, 4.0]))
    Array(5., dtype=float32)
  """
  sq = coeffs @ gram @ coeffs
  zero = is_negligible(sq, term_scale_sq(gram, coeffs), gram.shape[0])
  return jnp.where(zero, 0.0, jnp.sqrt(jnp.maximum(sq, 0.0)))


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
    b_col = _per_task(b, alpha)
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
      jnp.where(interior, det / jnp.where(interior, denom, 1.0), 0.0))
  safe_a = jnp.where(a_coef > 0, a_coef, 1.0)
  a_star = jnp.where(a_coef > 0, (y - b_coef) / safe_a, 0.5)
  candidates = jnp.stack([jnp.zeros_like(delta), jnp.ones_like(delta),
                          jnp.clip(a_star, 0.0, 1.0)])
  alphas = jnp.stack([candidates, 1.0 - candidates])
  values, _ = _dual_value_and_grad(gram, b, radius)(alphas)
  return alphas[:, jnp.argmin(values)]


def _spd_solve(aug: Array, k: int) -> Array:
  """``A_f^-1 B_f`` for a batch of small symmetric positive definite systems, unrolled.

  ``aug`` (K, K + R, F) holds F augmented systems ``[A_f | B_f]`` along its
  last axis. Gaussian elimination without pivoting (stable for SPD matrices,
  like Cholesky) on the upper triangle only (``A`` is symmetric), then back
  substitution: about ``K^3 / 6`` multiply-adds per system, each an elementwise
  operation over the F systems that XLA fuses and vectorises (the systems are
  the fastest-varying axis). For the tiny systems of :func:`face_candidates`
  this is much faster on CPU than a LAPACK call per system.

  Above ``UNROLL_TASKS`` tasks (few systems, from the iterative path), K
  Gauss-Jordan steps on the whole array instead: a program of K fused
  updates rather than K^2 / 2.

  Returns:
    (K, R, F), the solutions.
  """
  if k > UNROLL_TASKS:
    eye = jnp.eye(k, dtype=aug.dtype)[:, :, None]
    for i in range(k):
      pivot_row = aug[i] / aug[i, i]
      aug = aug - (aug[:, i] - eye[:, i])[:, None] * pivot_row[None]
    return aug[:, k:]
  # Row r: its upper-triangular part (columns r..K-1), then its right-hand sides.
  rows = [aug[r, r:] for r in range(k)]
  for i in range(k):
    pivot_row = rows[i]
    factors = pivot_row[1:k - i] / pivot_row[0]  # A_ri / A_ii = A_ir / A_ii
    for r in range(i + 1, k):
      rows[r] = rows[r] - factors[r - i - 1] * pivot_row[r - i:]
  solution = [None] * k
  for i in reversed(range(k)):
    acc = rows[i][k - i:]
    for c in range(i + 1, k):
      acc = acc - rows[i][c - i] * solution[c]
    solution[i] = acc / rows[i][0]
  return jnp.stack(solution)


def face_candidates(gram: Array, b: Array, radius: Array,
                    supports: Array) -> tuple[Array, Array]:
  """Exact minimisers of ``<b, alpha> + r ||h_alpha||`` on F faces of the simplex at once.

  ``supports`` (K, F) marks, column by column, the faces
  ``{alpha : alpha_k = 0 off the support}``. Each is solved in the variables
  ``beta_k = ||h_k|| alpha_k``, so that the system matrix is the correlation
  matrix ``C``, well conditioned even for badly scaled tasks
  (``d_k = 1 / ||h_k||``, ``b'_k = b_k / ||h_k||``, ``d^T beta = 1``).
  Two closed forms per face, non-finite where they do not exist:

  * smooth: stationarity ``b' + r C beta / ||h_alpha|| = nu d`` gives
    ``beta = C^-1 (nu d - b') / sqrt(D)``, ``nu = (B + sqrt(D)) / A`` with
    ``A = d^T C^-1 d``, ``B = d^T C^-1 b'``, ``E = b'^T C^-1 b'`` and
    ``D = B^2 - A (E - r^2)``; evaluated as
    ``beta = C^-1 d / A - C^-1 e / sqrt(A (r^2 - e^T C^-1 e))``, ``e = b' - (B/A) d``;
  * kink: the point of the face where ``h_alpha`` is smallest (``beta`` along
    ``(C + 4 eps I)^-1 d``, the null vector of ``C_S`` when there is one), the
    optimum when the problem is Pareto-stationary and the objective is not
    differentiable there. With ``b = 0, r = 0`` it is the min-norm point (MGDA).

  Returns:
    ``(smooth, kink)``, each (K, F): the candidates of face f in column f.

  Example:
    >>> smooth, kink = face_candidates(jnp.eye(2), jnp.zeros(2), 0.0, jnp.ones((2, 1), bool))
    >>> kink[:, 0]
    Array([0.5, 0.5], dtype=float32)
  """
  s = supports.astype(gram.dtype)
  corr, norms = correlation(gram)
  d = s / jnp.where(norms > 0, norms, 1.0)[:, None]
  b_s = b[:, None] * d
  # C_S padded with a unit diagonal off the support; the 4 eps ridge keeps it
  # invertible where h_alpha can vanish.
  eye = jnp.eye(gram.shape[0], dtype=gram.dtype)[:, :, None]
  ridge = 4 * jnp.finfo(gram.dtype).eps
  c_s = corr[:, :, None] * s[:, None, :] * s[None, :, :] + eye * (1.0 - s[:, None, :] + ridge)
  aug = jnp.concatenate([c_s, d[:, None], b_s[:, None]], axis=1)
  # Materialised once: fused into each elimination step, it would be recomputed.
  solution = _spd_solve(jax.lax.optimization_barrier(aug), gram.shape[0])
  cinv_d, cinv_b = solution[:, 0], solution[:, 1]
  a_ = task_sum(d * cinv_d)
  # D = B^2 - A (E - r^2) = A (r^2 - e^T C^-1 e) with e = b' - (B / A) d: formed
  # from the residual vector, not as a difference of large products.
  ratio = task_sum(d * cinv_b) / a_
  ce = cinv_b - ratio * cinv_d
  e = b_s - ratio * d
  slack = radius**2 - task_sum(e * ce)
  # Per-face scalars materialised: fused into the (K, F) candidates, each of
  # their K sums would be recomputed K times.
  a_, slack = jax.lax.optimization_barrier((a_, slack))
  s_ = jnp.sqrt(jnp.where(slack > 0, slack, jnp.nan))
  smooth = (cinv_d / a_ - ce / (jnp.sqrt(a_) * s_)) * d
  kink = cinv_d * d / a_
  return smooth, kink


def _refine_support(value_and_grad, gram: Array, b: Array, radius: Array,
                    support: Array) -> Array:
  """Primal active-set steps on the support, from the closed-form face solution.

  At most 2K steps: while the smooth face solution has a negative entry, drop
  the most negative index; else, while an index off the support violates the
  KKT condition ``g_k >= nu`` (``nu = <alpha, g>``), add the worst one.
  """
  k = gram.shape[0]
  slack = jnp.sqrt(jnp.finfo(gram.dtype).eps)

  def step(carry):
    support, done, n = carry
    alpha = face_candidates(gram, b, radius, support[:, None])[0][:, 0]
    ok = jnp.all(jnp.isfinite(alpha))
    alpha = jnp.where(ok, alpha, 0.0)
    neg = jnp.where(support, alpha, jnp.inf)
    worst_neg = jnp.argmin(neg)
    has_neg = (neg[worst_neg] < -slack * jnp.max(jnp.abs(alpha))) & (jnp.sum(support) > 1)
    _, grad = value_and_grad(alpha)
    nu = jnp.dot(alpha, grad)
    violation = jnp.where(support, -jnp.inf, (nu - grad) / (jnp.abs(nu) + jnp.abs(grad) + 1e-30))
    worst_out = jnp.argmax(violation)
    has_out = violation[worst_out] > slack
    new = jnp.where(has_neg, support.at[worst_neg].set(False),
                    jnp.where(has_out, support.at[worst_out].set(True), support))
    stop = done | ~ok | ~(has_neg | has_out)
    return jnp.where(stop, support, new), stop, n + 1

  def more(carry):
    _, done, n = carry
    return ~done & (n < 2 * k)

  support, _, _ = jax.lax.while_loop(more, step, (support, jnp.array(False), jnp.array(0)))
  return support


def select_best(value_and_grad, alpha: Array, candidates: tuple[Array, ...],
                tol: Array) -> Array:
  """Pick the final point among the iterate and the closed-form candidates.

  ``candidates`` are (K, N_i) arrays of points, one per column;
  ``value_and_grad`` maps (K, N) columns to their N values and (K, N) gradients. Candidates outside the
  simplex (beyond rounding) or non-finite are dropped. The objective alone
  cannot tell points apart that agree to ``sqrt(eps)`` (it is flat to second
  order there), so among the points whose objective is within ``tol`` of the
  lowest, the one with the smallest Frank-Wolfe gap (a stationarity
  certificate) wins.
  """
  slack = jnp.sqrt(jnp.finfo(alpha.dtype).eps)
  candidates = jnp.concatenate([alpha[:, None], *candidates], axis=1)
  # NaN fails both tests; an infinite entry makes the total fail.
  ok = (task_min(candidates) >= -slack) & (jnp.abs(task_sum(candidates) - 1.0) <= slack)
  candidates = jnp.where(ok, jnp.maximum(candidates, 0.0), alpha[:, None])
  points = candidates / task_sum(candidates)
  values, grads = value_and_grad(points)
  score = jnp.where(values <= jnp.min(values) + tol, frank_wolfe_gap(points, grads), jnp.inf)
  # The first index of the lowest score, as two plain min-reductions: XLA:CPU's
  # fused (value, index) argmin reduction is serial and ~10x slower here.
  index = jnp.arange(score.shape[0])
  return points[:, jnp.min(jnp.where(score == jnp.min(score), index, score.shape[0] - 1))]


def _all_supports(k: int) -> Array:
  """Every subset of K tasks as a (K, 2^K) 0/1 mask, one face per column.

  Column 0 is the empty face (its candidates are non-finite and dropped); it
  pads the 2^K - 1 faces to a power of two, which vectorises better.
  """
  codes = np.arange(2**k)[None, :]
  return jnp.asarray((codes >> np.arange(k)[:, None]) & 1, bool)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def conflict_averse_dual(gram: Array, radius_scale: Array | float,
                         *, max_iter: int = 200) -> Array:
  """Solve S1's dual: ``argmin_{alpha in simplex} alpha^T M 1/K + r sqrt(alpha^T M alpha)``.

  Here ``r = radius_scale * ||mu||`` and ``mu = (1/K) sum_k h_k``, both read
  off the Gram matrix ``M``. The minimiser is invariant to a positive rescaling
  of ``M``, so the problem is solved on ``M / trace(M)``. K = 2 in closed form;
  3 <= K <= ``MAX_ENUMERATED_TASKS`` by the closed-form candidates of every face
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
  value_and_grad = _dual_value_and_grad(gram, b, radius)
  scale = jnp.max(jnp.abs(b)) + radius * jnp.sqrt(jnp.max(jnp.diagonal(gram)))
  eps = jnp.finfo(gram.dtype).eps
  if k <= MAX_ENUMERATED_TASKS:
    # Every face's closed-form candidates at once: the optimum is one of them.
    candidates = face_candidates(gram, b, radius, _all_supports(k))
    return select_best(value_and_grad, ones / k, candidates, 64 * eps * scale)
  alpha = minimize_on_simplex(value_and_grad, ones / k, lipschitz0=1.0 + radius,
                              gap_tol=eps * scale, gap_rtol=jnp.sqrt(eps),
                              max_iter=max_iter)
  supports = jnp.stack([alpha > 0, alpha > 1e-6 * jnp.max(alpha),
                        _refine_support(value_and_grad, gram, b, radius, alpha > 0)], axis=1)
  candidates = face_candidates(gram, b, radius, supports)
  return select_best(value_and_grad, alpha, candidates, 64 * eps * scale)
