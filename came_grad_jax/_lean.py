"""The memory-lean path: coefficients from a Gram matrix, then ONE backward pass.

The full path (:func:`came_grad_jax.value_and_task_grads` + :func:`came_grad`)
holds all K task gradients, K x P numbers, at once. For a large model that is
K times the memory of a plain training step. Since every weighting's update is
``sum_k c_k w_k g_k`` and ``c`` depends only on the Gram matrix ``M``, the
update is also ``jax.grad`` of ``sum_k stop_gradient(c_k) w_k L_k``: one
backward pass, exactly what linear scalarization costs. What remains is to get
``M`` without the K x P stacked gradients. Two ways:

* :func:`lean_value_and_grad` -- **exact**. The task gradients are computed
  chunk of parameters by chunk (``num_chunks`` groups of leaves, one after
  another), and each chunk is reduced to its K x K Gram before the next one is
  computed, so the K gradients of one chunk (about K x P / num_chunks numbers
  when the leaves split evenly; a chunk never splits a leaf) are alive at a time,
  on top of the activations the backward passes need: where activations dominate
  the memory, the lean path saves nothing (see the memory-lean tutorial). Costs
  ``num_chunks`` vectorised K-task backward passes (each skipping the weight
  gradients of the other chunks) plus the final one. The update equals the
  full path's to rounding.
* :func:`representation_value_and_grad` -- **an approximation** (the
  "MGDA-UB" bound of Sener & Koltun, NeurIPS 2018). The model is split as
  ``losses = heads(params, encode(params, x))``; ``M`` is the Gram of the
  gradients of the K losses with respect to the shared representation
  ``z = encode(params, x)`` (K x |z| numbers, activations-sized). It differs
  from the parameter-space Gram by the encoder's Jacobian
  (``M_theta = J_z A J_z^T`` with ``A = (dz/dtheta)(dz/dtheta)^T``, not the
  identity, and cross-example terms of a batch dropped) and ignores the heads'
  own parameter gradients. The coefficients are therefore approximate; the
  update is then exactly the gradient of ``sum_k c_k w_k L_k`` for those
  coefficients, computed as one backward pass split in two: K passes, each
  through its own head only, give ``dL_k/dz`` and the head's parameter
  gradients, which are combined with ``c_k w_k``; the encoder is then
  back-propagated once, with ``sum_k c_k w_k dL_k/dz``. With task-specific
  heads (return the losses as a tuple of K scalars, so that each pass skips
  the other heads) this costs what one backward pass costs; parameters that
  several heads share directly have a gradient per task alive at once.

Both return the per-step :class:`~came_grad_jax.Diagnostics` computed from the
Gram they used (for the representation path, diagnostics *of the
representation gradients*).

Example:
  >>> import optax
  >>> from came_grad_jax import weightings
  >>> losses_fn = lambda p, x: jnp.stack([jnp.sum((p["w"] - x) ** 2), jnp.sum(p["w"] ** 2)])
  >>> params, opt = {"w": jnp.ones(3)}, optax.adamw(1e-3)
  >>> step = jax.jit(lean_value_and_grad(losses_fn, weightings.came(), num_chunks=2))
  >>> losses, grads, info = step(params, jnp.arange(3.0))  # grads are params-shaped
  >>> updates, opt_state = opt.update(grads, opt.init(params), params)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._diagnostics import Diagnostics, compute_diagnostics
from came_grad_jax._gram import combine, gram, weighted_sum
from came_grad_jax._task_grads import losses_vjp, stack_trees, task_grads_list
from came_grad_jax.weightings import Weighting, came

Array = jax.Array
PyTree = Any


class LeanInfo(NamedTuple):
  """What a lean step computed besides the losses and the update."""

  gram: Array
  """(K, K) the Gram matrix of the task-weighted gradients the coefficients came from."""
  coefficients: Array
  """(K,) ``c``; the update is ``grad sum_k c_k w_k L_k``."""
  diagnostics: Diagnostics
  """The step's diagnostics, from ``gram`` and ``coefficients``."""


def _task_weights(task_weights, k: int, dtype) -> Array:
  hyperparams.check_task_weights(task_weights, k)
  return jnp.ones((k,), dtype) if task_weights is None else jnp.asarray(task_weights, dtype)


def _coefficients(weighting: Weighting, m: Array, weights: Array, losses: Array):
  """``c`` from ``M``, and the cotangent ``c_k w_k`` of the final backward pass."""
  coeffs = jax.lax.stop_gradient(jnp.asarray(weighting(m), m.dtype))
  cotangent = (coeffs * weights).astype(losses.dtype)
  return coeffs, cotangent


def _chunk_leaves(sizes: list[int], num_chunks: int) -> list[list[int]]:
  """Split leaf indices, in order, into at most ``num_chunks`` groups of similar total size."""
  total = sum(sizes)
  groups: list[list[int]] = [[]]
  filled = 0
  for index, size in enumerate(sizes):
    target = total * len(groups) / num_chunks
    if groups[-1] and filled + size / 2 > target and len(groups) < num_chunks:
      groups.append([])
    groups[-1].append(index)
    filled += size
  return groups


def lean_value_and_grad(
    fun: Callable[..., Any],
    weighting: Weighting | None = None,
    *,
    task_weights: jax.typing.ArrayLike | None = None,
    has_aux: bool = False,
    num_chunks: int = 1,
) -> Callable[..., tuple[Any, PyTree, LeanInfo]]:
  """Exact multi-task update with at most K x (P / num_chunks) task-gradient numbers alive.

  ``M = sum_chunks Gram(task gradients of the chunk's leaves)`` (exact),
  ``c = weighting(M)``, update ``= grad_params sum_k stop_gradient(c_k) w_k L_k``
  (one backward pass), which equals ``sum_k c_k w_k g_k``, the full path's.

  Args:
    fun: ``fun(params, *args) -> losses`` (K,), or ``(losses, aux)`` if ``has_aux``.
    weighting: ``gram (K, K) -> coefficients (K,)``; default
      ``weightings.came()`` (rho 0.5, kappa 1.5, nu 0.2).
    task_weights: ``w`` (K,), finite and >= 0; None for all ones.
    has_aux: whether ``fun`` returns auxiliary data.
    num_chunks: how many groups of parameter leaves the task gradients are
      computed in, one group at a time (1: all at once, the full path's
      memory for the Gram but still one final backward pass; more: less
      memory, one more vectorised backward pass per group).

  Returns:
    A function ``(params, *args) -> (losses, grads, info)`` (``(losses, aux)``
    first if ``has_aux``): ``grads`` params-shaped (feed it to any Optax
    optimizer), ``info`` a :class:`LeanInfo`.

  Example:
    >>> f = lambda p, x: jnp.stack([jnp.sum((p - x) ** 2), jnp.sum(p ** 2)])
    >>> losses, g, info = lean_value_and_grad(f)(jnp.ones(3), jnp.arange(3.0))
  """
  if not isinstance(num_chunks, int) or num_chunks < 1:
    raise ValueError(f"num_chunks must be a positive int, got {num_chunks!r}")
  weighting = came() if weighting is None else weighting
  if not callable(weighting):
    raise TypeError(f"weighting must be a callable gram -> coefficients, got "
                    f"{type(weighting).__name__}")

  def wrapped(params, *args):
    losses, vjp_fn, aux = losses_vjp(lambda p: fun(p, *args), params, has_aux)
    k = losses.shape[0]
    leaves = jax.tree_util.tree_leaves(params)
    groups = _chunk_leaves([jnp.size(x) for x in leaves], num_chunks)
    eye = jnp.eye(k, dtype=losses.dtype)
    m = None
    for group in groups:
      # The barrier orders the chunks: the next chunk's backward passes start
      # only once the previous chunk's gradients are reduced to K x K.
      cotangents = eye if m is None else jax.lax.optimization_barrier((m, eye))[1]
      (stacked,) = jax.vmap(vjp_fn)(cotangents)
      chunk = [jax.tree_util.tree_leaves(stacked)[i] for i in group]
      part = gram(chunk)
      m = part if m is None else m + part.astype(m.dtype)
    assert m is not None  # at least one chunk
    weights = _task_weights(task_weights, k, m.dtype)
    m = m * jnp.outer(weights, weights)
    coeffs, cotangent = _coefficients(weighting, m, weights, losses)
    (grads,) = vjp_fn(cotangent)
    info = LeanInfo(m, coeffs, compute_diagnostics(m, coeffs))
    return ((losses, aux) if has_aux else losses), grads, info

  return wrapped


def representation_value_and_grad(
    encode: Callable[..., Any],
    heads: Callable[..., Any],
    weighting: Weighting | None = None,
    *,
    task_weights: jax.typing.ArrayLike | None = None,
    has_aux: bool = False,
) -> Callable[..., tuple[Any, PyTree, LeanInfo]]:
  """Approximate multi-task update from the Gram of representation gradients.

  With ``z = encode(params, *args)`` and ``losses = heads(params, z, *args)``:
  ``M_ij = w_i w_j <dL_i/dz, dL_j/dz>``, ``c = weighting(M)``, and the update
  ``grad_params sum_k stop_gradient(c_k) w_k L_k``. The K backward passes
  through the heads (each through its own head, to its parameters and to
  ``z``) are reused for the update: their head gradients combined with
  ``c_k w_k``, and the encoder back-propagated once with
  ``sum_k c_k w_k dL_k/dz``. An approximation of the parameter-space Gram (see
  the module docstring; MGDA-UB, Sener & Koltun 2018): the coefficients are
  those of the representation gradients.

  Args:
    encode: ``encode(params, *args) -> z``, the shared representation (an array
      or a pytree of arrays, e.g. the encoder's output tokens).
    heads: ``heads(params, z, *args) -> losses``, a (K,) vector or (faster:
      each backward pass then skips the other heads) a tuple of K scalars;
      ``(losses, aux)`` if ``has_aux``. It should reach the encoder's parameters only through ``z``;
      parameters that several heads use directly (a shared token embedding,
      say) get their exact gradient in the update, but their conflicts are not
      in the Gram.
    weighting: ``gram (K, K) -> coefficients (K,)``; default ``weightings.came()``.
    task_weights: ``w`` (K,), finite and >= 0; None for all ones.
    has_aux: whether ``heads`` returns auxiliary data.

  Returns:
    A function ``(params, *args) -> (losses, grads, info)`` (``(losses, aux)``
    first if ``has_aux``), ``grads`` params-shaped, ``info`` a :class:`LeanInfo`
    whose Gram is the representation Gram.

  Example:
    >>> encode = lambda p, x: jnp.tanh(p["enc"] @ x)
    >>> heads = lambda p, z, x: jnp.stack([jnp.sum(p["a"] * z), jnp.sum((p["b"] * z) ** 2)])
    >>> step = representation_value_and_grad(encode, heads)
  """
  weighting = came() if weighting is None else weighting
  if not callable(weighting):
    raise TypeError(f"weighting must be a callable gram -> coefficients, got "
                    f"{type(weighting).__name__}")

  def wrapped(params, *args):
    z, encode_vjp = jax.vjp(lambda p: encode(p, *args), params)
    # K backward passes, each through its own head only (not vmapped), to the
    # head parameters and to z: the heads' part of the update is then a
    # weighted sum of them, and only the encoder is back-propagated once more.
    out, grads_list = task_grads_list(lambda pz: heads(pz[0], pz[1], *args), (params, z),
                                      has_aux=has_aux)
    losses = out[0] if has_aux else out
    k = losses.shape[0]
    rep_grads = stack_trees([g[1] for g in grads_list])
    m = gram(rep_grads)
    assert m is not None  # at least one chunk
    weights = _task_weights(task_weights, k, m.dtype)
    m = m * jnp.outer(weights, weights)
    coeffs, cotangent = _coefficients(weighting, m, weights, losses)
    (encode_grads,) = encode_vjp(combine(rep_grads, cotangent))
    grads = jax.tree.map(jnp.add, weighted_sum([g[0] for g in grads_list], cotangent),
                         encode_grads)
    info = LeanInfo(m, coeffs, compute_diagnostics(m, coeffs))
    return out, grads, info

  return wrapped
