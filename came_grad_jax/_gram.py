"""Stacked task gradients: validation, Gram matrix and weighted combination.

"Stacked task gradients" are a pytree shaped like the params whose every leaf
has a leading task axis K (what :func:`came_grad_jax.value_and_task_grads`
returns). The Gram matrix is summed leaf by leaf, contracting every axis but
the task axis, so a sharded leaf contributes a K x K partial sum and the
cross-device reduction is an all-reduce of K x K numbers.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from came_grad_jax._numerics import SMALL_K, compute_dtype

Array = jax.Array
PyTree = Any

#: Row lengths of the fused pass: rows are summed sequentially, then the row
#: sums by a vectorised reduction (short rows cost loop overhead, long rows
#: rounding error).
_ROW_MIN, _ROW_TARGET, _ROW_MAX = 128, 1024, 4096
#: Shortest row accepted when longer ones would cross a sharded axis.
_ROW_MIN_SHARDED = 16

#: Up to this many tasks (K = 3 measured no gain), unsharded leaves whose per-task size is a multiple of
#: ``_UNROLL_ROWS`` (and at least ``_UNROLL_MIN``) take the unrolled, vectorised
#: Gram of :func:`_pairwise_gram`.
_UNROLL_K, _UNROLL_ROWS, _UNROLL_MIN = 2, 8, 1024

#: Leaves with at most this many numbers per task (and no sharding) share one
#: Gram pass: a kernel per small leaf costs more than its arithmetic.
_SMALL_LEAF = 16384


def num_tasks_of(stacked: PyTree, *, name: str = "updates") -> int:
  """Validate stacked task gradients and return K, their common leading axis.

  Raises:
    ValueError: if there are no leaves, a leaf has no task axis, or leading axes differ.
    TypeError: if a leaf is not floating point.
  """
  leaves, _ = jax.tree_util.tree_flatten_with_path(stacked)
  if not leaves:
    raise ValueError(f"{name} has no array leaves")
  sizes = {}
  for path, leaf in leaves:
    where = jax.tree_util.keystr(path) or "<root>"
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise TypeError(
          f"{name}{where} must be floating point task gradients, got dtype "
          f"{jnp.result_type(leaf)}")
    if jnp.ndim(leaf) < 1:
      raise ValueError(
          f"{name}{where} is a scalar: stacked task gradients need a leading "
          "task axis K on every leaf (use value_and_task_grads)")
    sizes.setdefault(jnp.shape(leaf)[0], where)
  if len(sizes) > 1:
    detail = ", ".join(f"{w}: {k}" for k, w in sizes.items())
    raise ValueError(
        f"{name} leaves must share the leading task axis K, got different sizes "
        f"({detail}); stacked task gradients (from value_and_task_grads) have a "
        "leading axis K on every leaf")
  return next(iter(sizes))


def _dot_gram(leaf: Array) -> Array:
  """``X X^T`` by one ``dot_general`` contracting every axis but the first.

  With explicit sharding in the leaf's type the (replicated) output sharding
  is stated, so that a sharded contraction is a partial product and an
  all-reduce.
  """
  dtype = compute_dtype(leaf.dtype)
  axes = tuple(range(1, leaf.ndim))
  out_sharding = None
  try:
    mesh = jax.typeof(leaf).sharding.mesh
    if not mesh.empty and jax.sharding.AxisType.Explicit in mesh.axis_types:
      out_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  except (AttributeError, TypeError):
    pass
  out = jax.lax.dot_general(leaf, leaf, ((axes, axes), ((), ())),
                            preferred_element_type=dtype, out_sharding=out_sharding)
  return out.astype(dtype)


def _divisor_near(n: int, lo: int, hi: int, target: int) -> int | None:
  """The divisor of ``n`` in ``[lo, hi]`` closest to ``target`` (None if there is none)."""
  best = None
  for d in range(max(lo, 1), min(hi, n) + 1):
    if n % d == 0 and (best is None or abs(d - target) < abs(best - target)):
      best = d
  return best


def _unsharded_axes(leaf: Array) -> tuple[bool, ...] | None:
  """Which axes of ``leaf`` are known to be whole on every device; None if unknown.

  Read off the sharding in the leaf's type: with no mesh every axis is whole;
  on a mesh whose axes are all ``Explicit`` the partition spec says which
  axes are split; on a mesh with ``Auto`` axes the compiler may split any axis
  (the spec does not say), so nothing is known.
  """
  try:
    sharding = jax.typeof(leaf).sharding
    mesh, spec = sharding.mesh, sharding.spec
  except (AttributeError, TypeError):  # no sharding in types (older JAX)
    return (True,) * leaf.ndim if jax.device_count() == 1 else None
  if mesh.empty or mesh.size == 1:
    return (True,) * leaf.ndim
  if any(t != jax.sharding.AxisType.Explicit for t in mesh.axis_types):
    return None
  spec = tuple(spec) + (None,) * (leaf.ndim - len(spec))
  return tuple(entry is None for entry in spec)


def _row_layout(shape: tuple[int, ...], whole: tuple[bool, ...]
                ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
  """How to view one leaf's per-task block as rows of about ``_ROW_TARGET`` numbers.

  Args:
    shape: the leaf's shape, task axis first.
    whole: per axis, whether it is whole on every device (see
      :func:`_unsharded_axes`); rows are made of whole axes only, so that a
      sharded axis is reduced by the ordinary partial sum + all-reduce.

  Returns:
    ``(view_shape, row_axes)``: the shape to view the leaf as (the original
    one, or with one whole axis split in two, a reshape without a copy) and
    the trailing axes that form a row; None when no row of at least
    ``_ROW_MIN_SHARDED`` numbers can be made that way.
  """
  k, dims = shape[0], shape[1:]
  tail, j = 1, len(dims) - 1
  while j >= 0 and whole[j + 1] and tail * dims[j] < _ROW_MIN:
    tail *= dims[j]
    j -= 1
  if j < 0:  # the whole per-task block is one short row
    return shape, tuple(range(1, len(shape)))
  if not whole[j + 1]:  # rows must stop at a sharded axis
    if tail < _ROW_MIN_SHARDED:
      return None
    return shape, tuple(range(j + 2, len(shape)))
  if tail * dims[j] <= _ROW_MAX:
    return shape, tuple(range(j + 1, len(shape)))
  block = _divisor_near(dims[j], -(-_ROW_MIN // tail), _ROW_MAX // tail, _ROW_TARGET // tail)
  if block is None:
    if tail < _ROW_MIN_SHARDED:
      return None
    return shape, tuple(range(j + 2, len(shape)))
  view = (k,) + dims[:j] + (dims[j] // block, block) + dims[j + 1:]
  return view, tuple(range(j + 2, len(view)))


def _pairwise_gram(leaf: Array, layout) -> Array:
  """``X X^T`` as one fused pass: every product ``x_i x_j`` (i <= j) summed row by row.

  A single variadic ``lax.reduce`` over the row axes reads each row of the K
  task gradients once and accumulates the K(K+1)/2 products together (XLA's
  plain ``dot_general`` for a K x P by P x K product pads the tiny K to its
  GEMM tile and is several times slower on CPU). The row sums (about
  ``_ROW_TARGET`` terms each) are then summed by an ordinary reduction, so the
  rounding error grows like a two-level sum, not like one sequential sum over P.
  """
  shape, row_axes = layout
  k = shape[0]
  dtype = compute_dtype(leaf.dtype)
  pairs = [(i, j) for i in range(k) for j in range(i, k)]
  index = np.zeros((k, k), np.int32)
  for n, (i, j) in enumerate(pairs):
    index[i, j] = index[j, i] = n
  block = leaf.size // max(k, 1)
  if (k <= _UNROLL_K and block % _UNROLL_ROWS == 0 and block >= _UNROLL_MIN
      and _unsharded_axes(leaf) == (True,) * leaf.ndim):
    # Few pairs: the per-task block viewed as _UNROLL_ROWS rows (a free reshape)
    # and summed down the rows by unrolled elementwise adds, one vectorised
    # pass; XLA:CPU emits the variadic reduction below as scalar code (a float
    # sum it may not reassociate), which costs more than the read at any K.
    # Beyond _UNROLL_K the stacked outputs stop fusing and this form loses.
    x = leaf.reshape(k, _UNROLL_ROWS, block // _UNROLL_ROWS).astype(dtype)
    columns = jnp.stack([functools.reduce(operator.add, [
        x[i, q] * x[j, q] for q in range(_UNROLL_ROWS)]) for i, j in pairs])
    return jnp.sum(columns, axis=1)[index]
  x = leaf.reshape(shape).astype(dtype)
  products = [x[i] * x[j] for i, j in pairs]
  zero = jnp.zeros([], dtype)
  axes = tuple(a - 1 for a in row_axes)  # the task axis is gone from x[i]
  row_sums = jax.lax.reduce(
      products, [zero] * len(products),
      lambda acc, new: tuple(a + b for a, b in zip(acc, new)), axes)
  # The second level pair by pair: stacking the row sums into one reduction saves
  # dispatches at K = 8 but makes XLA keep the stacked block, which raised the
  # compiled temporary memory of lean_value_and_grad's chunks above the unchunked
  # step (tests/test_lean.py).
  sums = jnp.stack([jnp.sum(s) for s in row_sums])
  return sums[index]


def _leaf_gram(leaf: Array) -> Array:
  """``X X^T`` for one leaf, contracting every axis but the first, float32 or wider.

  Small K (up to ``SMALL_K``): one fused pass over the leaf
  (:func:`_pairwise_gram`), its rows made of trailing axes that are whole on
  every device; otherwise -- larger K, rows that cannot be made, or a leaf on
  a mesh with ``Auto`` axes, whose sharding the compiler chooses later -- one
  ``dot_general``. Both contract the leaf where it lies (at most one whole
  axis is split by a reshape, never a copy), so a sharded leaf reduces to
  partial sums and an all-reduce, never an all-gather.
  """
  if leaf.ndim < 2 or leaf.shape[0] > SMALL_K:
    return _dot_gram(leaf)
  whole = _unsharded_axes(leaf)
  layout = None if whole is None else _row_layout(leaf.shape, whole)
  if layout is None:
    return _dot_gram(leaf)
  return _pairwise_gram(leaf, layout)


def _is_small(leaf: Array) -> bool:
  """Whether ``leaf`` joins the shared Gram pass of small, unsharded leaves."""
  if leaf.ndim < 2 or leaf.shape[0] > SMALL_K or leaf.size > _SMALL_LEAF * leaf.shape[0]:
    return False
  whole = _unsharded_axes(leaf)
  return whole is not None and all(whole)


def _merge(leaves: list[Array], dtype) -> Array:
  """The small leaves side by side as one (K, N) block, zero-padded to whole rows.

  The zeros add nothing to the Gram; XLA fuses the concatenation into the
  Gram's single pass, so the block is not materialised.
  """
  k = leaves[0].shape[0]
  parts = [leaf.reshape(k, -1).astype(dtype) for leaf in leaves]
  pad = -sum(p.shape[1] for p in parts) % _ROW_TARGET
  return jnp.concatenate(parts + [jnp.zeros((k, pad), dtype)], axis=1)


def gram(stacked: PyTree, task_weights: jax.typing.ArrayLike | None = None) -> Array:
  """The Gram matrix ``M_ij = <h_i, h_j>`` of the task-weighted gradients.

  ``h_k = w_k g_k``; ``M = (w w^T) * sum_leaves G_leaf G_leaf^T``, accumulated in
  float32 or wider whatever the gradients' dtype.

  Args:
    stacked: stacked task gradients (leading axis K on every leaf).
    task_weights: ``w`` (K,), or None for all ones.

  Returns:
    ``M``, (K, K).

  Example:
    >>> g = {"w": jnp.array([[1.0, 0.0], [1.0, 1.0]])}
    >>> gram(g)
    Array([[1., 1.],
           [1., 2.]], dtype=float32)
  """
  leaves = jax.tree_util.tree_leaves(stacked)
  dtype = compute_dtype(jnp.result_type(*leaves))
  is_small = [_is_small(leaf) for leaf in leaves]
  if sum(is_small) > 1:
    small = [leaf for leaf, flag in zip(leaves, is_small) if flag]
    leaves = [leaf for leaf, flag in zip(leaves, is_small) if not flag] + [_merge(small, dtype)]
  total = functools.reduce(operator.add, [_leaf_gram(leaf).astype(dtype) for leaf in leaves])
  if task_weights is None:
    return total
  w = jnp.asarray(task_weights, dtype)
  return total * jnp.outer(w, w)


def combine(stacked: PyTree, coeffs: Array) -> PyTree:
  """``sum_k coeffs_k g_k`` leaf by leaf, in each leaf's own dtype.

  The sum is formed in float32 or wider and cast back, so bf16 gradients give a
  bf16 update. Fold task weights into ``coeffs`` (``coeffs = c * w``).

  Example:
    >>> combine({"w": jnp.array([[1.0, 0.0], [1.0, 1.0]])}, jnp.array([2.0, 1.0]))
    {'w': Array([3., 1.], dtype=float32)}
  """

  def one(leaf):
    if leaf.shape[0] > SMALL_K:
      dtype = compute_dtype(leaf.dtype)
      out = jnp.tensordot(coeffs.astype(dtype), leaf, axes=1, preferred_element_type=dtype)
      return out.astype(leaf.dtype)
    # K fused multiply-adds: one elementwise pass, no GEMM call for a K-vector.
    return _scaled_sum([leaf[k] for k in range(leaf.shape[0])], coeffs)

  return jax.tree.map(one, stacked)


def _scaled_sum(parts: list[Array], coeffs: Array) -> Array:
  """``sum_k coeffs_k parts[k]`` formed in float32 or wider, cast back to the parts' dtype."""
  dtype = compute_dtype(parts[0].dtype)
  total = functools.reduce(
      operator.add, [c * part.astype(dtype) for c, part in zip(coeffs.astype(dtype), parts)])
  return total.astype(parts[0].dtype)


def weighted_sum(trees: list[PyTree], coeffs: Array) -> PyTree:
  """``sum_k coeffs_k trees[k]``: :func:`combine` for K separate (unstacked) trees.

  Leaves that are zeros in some trees (a task that does not reach them) fold
  away under ``jit``; nothing K x P is materialised.

  Example:
    >>> weighted_sum([{"w": jnp.ones(2)}, {"w": jnp.zeros(2)}], jnp.array([2.0, 5.0]))
    {'w': Array([2., 2.], dtype=float32)}
  """

  return jax.tree.map(lambda *leaves: _scaled_sum(list(leaves), coeffs), *trees)


def _task_amax(stacked: PyTree, dtype) -> Array:
  """``max |g_k|`` over every entry of task k's gradient: (K,), in ``dtype``."""
  per_leaf = [jnp.max(jnp.abs(leaf.reshape(leaf.shape[0], -1)), axis=1).astype(dtype)
              for leaf in jax.tree.leaves(stacked) if leaf.size]
  return functools.reduce(jnp.maximum, per_leaf)


def precise_gram(stacked: PyTree) -> Array:
  """The unweighted Gram matrix ``G G^T`` accumulated in float64 (needs ``jax_enable_x64``).

  Every leaf is widened to float64 before its products are summed, so ``M`` is
  exact to float64 rounding whatever the gradients' dtype; a weighting then
  solves in float64 too. A Gram matrix squares the condition number of the task
  gradients: with more tasks than their rank (a singular ``M``) float32
  accumulation and a float32 solve leave errors of about ``sqrt(eps_32)`` relative
  where the answer is exact (see ``docs/design.md``, "Precision"). Costs a
  float64 pass over the gradients (XLA on GPU runs float64 at a fraction of float32's rate).

  Raises:
    ValueError: if 64-bit floats are disabled (``jax.config.update("jax_enable_x64", True)``).

  Example:
    >>> with jax.enable_x64(True):
    ...   precise_gram({"w": jnp.array([[1.0, 0.0], [1.0, 1.0]], jnp.float32)}).dtype
    dtype('float64')
  """
  if not jax.config.read("jax_enable_x64"):
    raise ValueError(
        "precise_gram=True accumulates the Gram matrix in float64 and needs 64-bit floats: "
        "jax.config.update('jax_enable_x64', True) (or jax.enable_x64(True) around the step)")
  return gram(jax.tree.map(lambda x: jnp.asarray(x).astype(jnp.float64), stacked))


def checked_gram(stacked: PyTree, task_weights: jax.typing.ArrayLike, *,
                 precise: bool = False) -> tuple[Array, Array]:
  """The weighted Gram matrix of :func:`gram` and whether float's range kept it exact.

  The unweighted Gram ``G G^T`` is formed in one pass. When one of its
  diagonal entries is below ``tiny / eps`` (a task's squared entries may have
  flushed to zero: entries near 1e-19 in float32) or an entry overflowed, it is
  formed again with each task scaled by a power of two (exact) that brings its
  largest entry to [0.5, 1), and scaled back:
  ``M_ij = w_i w_j 2^(e_i + e_j) <g_i / 2^e_i, g_j / 2^e_j>``. That rescue
  costs one pass for the maxima and one for the Gram, and only runs then.

  A zero task weight or a zero gradient is not a loss of information (its row
  of ``M`` is exactly 0), nor is a task whose squared norm is below ``eps^2``
  times the largest task's (it is rounding noise next to that task, as it
  would be at any scale). Information is lost when a task's squared norm is
  not representable to full precision although it is not negligible (every
  task's gradient tiny), or when an entry of ``M`` exceeds the largest float.

  Args:
    stacked: stacked task gradients (leading axis K on every leaf).
    task_weights: ``w`` (K,), finite and >= 0.
    precise: accumulate in float64 (:func:`precise_gram`; needs x64); ``M`` is
      then float64 and float64's range is checked.

  Returns:
    ``(M, ok)``: the (K, K) weighted Gram matrix and a boolean scalar, False
    when ``M`` lost information to the float range on finite gradients (the
    caller makes the update NaN). ``ok`` is True for non-finite gradients:
    their ``M`` is non-finite and the caller sees that.

  Example:
    >>> g = {"w": jnp.array([[1e-20, 0.0], [3.0, 4.0]])}
    >>> m, ok = checked_gram(g, jnp.array([1.0, 1.0]))
    >>> bool(ok), round(float(m[0, 1]) / 1e-20, 4)  # <g_0, g_1> = 3e-20, kept
    (True, 3.0)
  """
  raw = precise_gram(stacked) if precise else gram(stacked)
  if precise:  # the rescue below works in float64 too
    stacked = jax.tree.map(lambda x: jnp.asarray(x).astype(jnp.float64), stacked)
  dtype = raw.dtype
  w = jnp.asarray(task_weights, dtype)
  fi = jnp.finfo(dtype)
  suspicious = jnp.any(jnp.diagonal(raw) < fi.tiny / fi.eps) | ~jnp.all(jnp.isfinite(raw))

  def plain(_):
    return raw * jnp.outer(w, w), jnp.array(True)

  def rescaled(_):
    amax = _task_amax(stacked, dtype)
    present = (amax > 0) & jnp.isfinite(amax) & (w > 0)
    _, e = jnp.frexp(jnp.where(present, amax, 1.0))
    e = jnp.where(present, e, 0)
    scale = jnp.ldexp(jnp.ones((), dtype), -e)
    scaled = jax.tree.map(
        lambda x: x.astype(dtype) * scale.reshape((-1,) + (1,) * (x.ndim - 1)), stacked)
    c = gram(scaled)
    m = jnp.ldexp(c, e[:, None] + e[None, :]) * jnp.outer(w, w)
    # log2 of each task's true squared norm, from the well-scaled c.
    c_diag = jnp.where(present, jnp.diagonal(c), 1.0)
    log_sq = jnp.where(present, 2.0 * e + jnp.log2(c_diag) + 2.0 * jnp.log2(
        jnp.where(present, w, 1.0)), -jnp.inf)
    largest = jnp.max(log_sq)
    imprecise = present & (log_sq < jnp.log2(fi.tiny / fi.eps))
    negligible = log_sq < largest + 2.0 * jnp.log2(fi.eps)
    overflow = jnp.any(log_sq >= jnp.log2(fi.max))
    finite_input = jnp.all(jnp.isfinite(amax))
    ok = ~finite_input | ~(jnp.any(imprecise & ~negligible) | overflow)
    return m, ok

  return jax.lax.cond(suspicious, rescaled, plain, None)
