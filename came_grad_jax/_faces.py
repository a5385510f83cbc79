"""Exact minimisers of ``<b, alpha> + r ||h_alpha||`` on faces of the simplex.

The closed forms behind S1's dual (and MGDA's min-norm point, ``b = 0, r = 0``):
every face of the simplex at once for K <= ``SMALL_K``, or the face an
iterative solver found, corrected by active-set steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from came_grad_jax._numerics import SMALL_K, correlation, task_min, task_sum
from came_grad_jax._simplex import frank_wolfe_gap

Array = jax.Array


def _spd_solve(aug: Array, k: int) -> Array:
  """``A_f^-1 B_f`` for a batch of small symmetric positive definite systems, unrolled.

  ``aug`` (K, K + R, F) holds F augmented systems ``[A_f | B_f]`` along its
  last axis. Gaussian elimination without pivoting (stable for SPD matrices,
  like Cholesky) on the upper triangle only (``A`` is symmetric), then back
  substitution: about ``K^3 / 6`` multiply-adds per system, each an elementwise
  operation over the F systems that XLA fuses and vectorises (the systems are
  the fastest-varying axis). For the tiny systems of :func:`face_candidates`
  this is much faster on CPU than a LAPACK call per system.

  Above ``SMALL_K`` tasks (few systems, from the iterative path), K
  Gauss-Jordan steps on the whole array instead: a program of K fused
  updates rather than K^2 / 2.

  Returns:
    (K, R, F), the solutions.
  """
  if k > SMALL_K:
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
  solution: dict[int, Array] = {}
  for i in reversed(range(k)):
    acc = rows[i][k - i:]
    for c in range(i + 1, k):
      acc = acc - rows[i][c - i] * solution[c]
    solution[i] = acc / rows[i][0]
  return jnp.stack([solution[i] for i in range(k)])


def face_candidates(gram: Array, b: Array, radius: jax.typing.ArrayLike,
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


def refine_support(value_and_grad, gram: Array, b: Array, radius: Array,
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
                tol: jax.typing.ArrayLike) -> Array:
  """Pick the final point among the iterate and the closed-form candidates.

  ``candidates`` are (K, N_i) arrays of points, one per column;
  ``value_and_grad`` maps (K, N) columns to their N values and (K, N)
  gradients. Candidates outside the simplex (beyond rounding) or non-finite are dropped. The objective alone
  cannot tell points apart that agree to ``sqrt(eps)`` (it is flat to second
  order there), so among the points whose objective is within ``tol`` of the
  lowest, the one with the smallest Frank-Wolfe gap (a stationarity
  certificate) wins.
  """
  slack = jnp.sqrt(jnp.finfo(alpha.dtype).eps)
  columns = jnp.concatenate([alpha[:, None], *candidates], axis=1)
  # NaN fails both tests; an infinite entry makes the total fail.
  ok = (task_min(columns) >= -slack) & (jnp.abs(task_sum(columns) - 1.0) <= slack)
  columns = jnp.where(ok, jnp.maximum(columns, 0.0), alpha[:, None])
  points = columns / task_sum(columns)
  values, grads = value_and_grad(points)
  score = jnp.where(values <= jnp.min(values) + tol, frank_wolfe_gap(points, grads), jnp.inf)
  # The first index of the lowest score, as two plain min-reductions: XLA:CPU's
  # fused (value, index) argmin reduction is serial and ~10x slower here.
  index = jnp.arange(score.shape[0])
  return points[:, jnp.min(jnp.where(score == jnp.min(score), index, score.shape[0] - 1))]


def all_supports(k: int) -> Array:
  """Every subset of K tasks as a (K, 2^K) 0/1 mask, one face per column.

  Column 0 is the empty face (its candidates are non-finite and dropped); it
  pads the 2^K - 1 faces to a power of two, which vectorises better.
  """
  codes = np.arange(2**k)[None, :]
  return jnp.asarray((codes >> np.arange(k)[:, None]) & 1, bool)


