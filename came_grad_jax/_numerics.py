"""Numerics shared by the weightings: dtypes, safe division, sums over K, noise tests.

Everything works on K-vectors and K x K Gram matrices, never on gradients.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp

Array = jax.Array

#: Up to this many tasks the library takes its small-K paths: sums and minima over
#: the task axis unrolled into fused elementwise operations, S1's dual solved by
#: enumerating every face of the simplex (2^K - 1 closed forms in one batch), and
#: the Gram matrix of large leaves formed pairwise in one fused pass.
SMALL_K = 8

#: Multiple of ``K * eps`` below which a squared norm read off a Gram matrix is
#: indistinguishable from rounding noise of the sum it came from.
NOISE_FACTOR = 16.0


def compute_dtype(dtype) -> jnp.dtype:
  """The dtype the K x K algebra runs in: float32 or wider, whatever the input."""
  return jnp.promote_types(dtype, jnp.float32)


def safe_divide(numerator: jax.typing.ArrayLike, denominator: jax.typing.ArrayLike,
                default: jax.typing.ArrayLike = 0.0, *, where: Array | None = None) -> Array:
  """``numerator / denominator`` where ``where`` holds (default: ``denominator > 0``), else ``default``.

  Both branches of the ``jnp.where`` are finite, so neither the value nor its
  gradient is NaN where the division is switched off.

  Example:
    >>> safe_divide(jnp.array([1.0, 1.0]), jnp.array([2.0, 0.0]))
    Array([0.5, 0. ], dtype=float32)
  """
  numerator = jnp.asarray(numerator)
  denominator = jnp.asarray(denominator)
  ok = denominator > 0 if where is None else where
  return jnp.where(ok, numerator / jnp.where(ok, denominator, 1), default)


def task_sum(x: Array) -> Array:
  """Sum over the leading (task) axis.

  Points on the simplex are (K,) vectors or N of them as columns (K, N). For
  K <= ``SMALL_K`` the sum is unrolled into elementwise adds that XLA fuses
  with what surrounds them (a reduction kernel per small sum costs more than
  the sum); above, a plain reduction.
  """
  if x.shape[0] > SMALL_K:
    return jnp.sum(x, axis=0)
  return functools.reduce(operator.add, [x[i] for i in range(x.shape[0])])


def task_min(x: Array) -> Array:
  """Minimum over the leading (task) axis, unrolled like :func:`task_sum`; NaN propagates."""
  if x.shape[0] > SMALL_K:
    return jnp.min(x, axis=0)
  return functools.reduce(jnp.minimum, [x[i] for i in range(x.shape[0])])


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


def per_task(v: Array, like: Array) -> Array:
  """A (K,) vector shaped to broadcast against ``like``, (K,) or (K, N) columns."""
  return v.reshape(v.shape + (1,) * (like.ndim - 1))


def term_scale_sq(gram: Array, coeffs: Array) -> Array:
  """``(sum_k |a_k| ||h_k||)^2``: the squared size of the terms of ``sum_k a_k h_k``.

  ``coeffs`` is one point (K,) or N points as columns (K, N).
  """
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
  return task_sum(jnp.abs(coeffs) * per_task(norms, coeffs)) ** 2


def safe_sqrt(x: jax.typing.ArrayLike) -> Array:
  """``sqrt(max(x, 0))`` whose derivative is 0, not NaN, where ``x <= 0``.

  ``d sqrt(x) / dx = 1 / (2 sqrt(x))`` is infinite at 0, and reverse mode
  multiplies it by the zero cotangent of a switched-off branch: NaN. Both
  branches of the ``jnp.where`` here are finite, so ``jax.grad`` through a zero
  task gradient's norm is finite.

  Example:
    >>> jax.grad(lambda x: safe_sqrt(x))(0.0)
    Array(0., dtype=float32, weak_type=True)
    >>> safe_sqrt(jnp.array([4.0, -1.0, jnp.nan]))
    Array([ 2.,  0., nan], dtype=float32)
  """
  x = jnp.asarray(x)
  positive = x > 0
  # NaN stays NaN (as in sqrt(max(x, 0))), so that a non-finite Gram matrix still shows.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)),
                   jnp.where(jnp.isnan(x), x, 0.0))


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
  norms = safe_sqrt(jnp.diagonal(gram))
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
  return jnp.where(zero, 0.0, safe_sqrt(sq))


def gram_exponent(gram: Array) -> Array:
  """An even ``E`` (int32) with ``max_k M_kk / 2^E`` in ``[1/8, 1/2)``; 0 if that max is 0 or not finite.

  ``M / 2^E`` is exact (a power of two) and its largest entry is below 1 in
  magnitude, so a weighting solved on it neither overflows (Gram entries near
  float32's limit, 1e38, summed or squared) nor underflows; ``E`` even makes
  ``2^(E/2)``, the gradients' scale, exact too.

  Example:
    >>> int(gram_exponent(jnp.array([[1e38, 0.0], [0.0, 1.0]])))
    128
  """
  top = jnp.max(jnp.diagonal(gram))
  usable = jnp.isfinite(top) & (top > 0)
  _, e = jnp.frexp(jnp.where(usable, top, 1.0))  # top = f 2^e, f in [1/2, 1)
  return jnp.where(usable, e + (e % 2), 0).astype(jnp.int32)
