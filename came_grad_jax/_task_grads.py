"""Per-task gradients: one forward pass, K backward passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def check_losses(losses, has_aux: bool) -> int:
  """K, after checking that ``losses`` is a floating (K,) vector or K floating scalars."""
  if isinstance(losses, (tuple, list)):
    shapes = [getattr(x, "shape", None) for x in losses]
    if not losses or any(shape != () for shape in shapes):
      raise ValueError(f"fun must return K scalar losses when it returns a sequence, got "
                       f"shapes {shapes}"
                       + ("" if has_aux else "; to return (losses, aux) pass has_aux=True"))
    dtypes = {jnp.result_type(x) for x in losses}
    if len(dtypes) != 1 or not jnp.issubdtype(dtypes.pop(), jnp.floating):
      raise TypeError("fun's K losses must be floating point scalars of one dtype")
    return len(losses)
  shape = getattr(losses, "shape", None)
  if shape is None or len(shape) != 1:
    raise ValueError(
        "fun must return a vector of K losses (shape (K,)) or a tuple of K scalars, got "
        f"{shape if shape is not None else type(losses).__name__}"
        + ("; with has_aux=True return (losses, aux)" if has_aux else ""))
  if not jnp.issubdtype(losses.dtype, jnp.floating):
    raise TypeError(f"fun must return floating point losses, got {losses.dtype}")
  if shape[0] == 0:
    raise ValueError("fun returned no losses (shape (0,)): it must return K >= 1 task losses")
  return shape[0]


def as_vector(losses) -> Array:
  """The losses as a (K,) vector, whether given as one or as K scalars."""
  return jnp.stack(losses) if isinstance(losses, (tuple, list)) else losses


def _split(out, has_aux: bool):
  """``(losses, aux)`` of ``fun``'s output; ``aux`` None without ``has_aux``."""
  return out if has_aux else (out, None)


def losses_vjp(closed: Callable[[Any], Any], params: Any, has_aux: bool):
  """``(losses (K,), vjp_fn, aux)`` of ``closed(params)`` (aux None without has_aux), checked."""

  def vector(p):
    losses, aux = _split(closed(p), has_aux)
    check_losses(losses, has_aux)
    return as_vector(losses), aux

  losses, vjp_fn, aux = jax.vjp(vector, params, has_aux=True)
  return losses, vjp_fn, (aux if has_aux else None)


def stack_trees(trees: list[Any]) -> Any:
  """K params-shaped trees as one tree whose leaves have a leading task axis K."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def task_grads_list(fun: Callable[..., Any], params: Any, *args: Any,
                    has_aux: bool = False) -> tuple[Any, list[Any]]:
  """``(losses, [grad L_1, ..., grad L_K])``: K separate reverse passes, unstacked.

  Under ``jit`` XLA shares the K forward passes. When ``fun`` returns its
  losses as a tuple of K scalars, each ``jax.grad`` of ``L_k`` runs only
  through what ``L_k`` depends on; a stacked (K,) vector instead sends (exact
  zero) cotangents through every loss, which neither JAX nor XLA prunes.
  Kept as a list of K params-shaped trees, leaves a task does not reach stay
  zeros that XLA folds away in a weighted sum, where a stacked (K, ...) leaf
  would be materialised. ``losses`` (a (K,) vector) is ``(losses, aux)`` when
  ``has_aux``.
  """

  k = check_losses(_split(jax.eval_shape(fun, params, *args), has_aux)[0], has_aux)

  def task_loss(p, i):
    losses, aux = _split(fun(p, *args), has_aux)
    return losses[i], (as_vector(losses), aux)

  grads = []
  for i in range(k):
    grad, (losses, aux) = jax.grad(lambda p, i=i: task_loss(p, i), has_aux=True)(params)
    grads.append(grad)
  return ((losses, aux) if has_aux else losses), grads


def value_and_task_grads(fun: Callable[..., Any], *, has_aux: bool = False,
                         vectorize: bool = True) -> Callable[..., tuple[Any, Any]]:
  """Like ``jax.value_and_grad`` for a function returning K losses.

  ``task_grads[k] = d losses[k] / d params``, with respect to the first
  argument. With ``vectorize=True`` (default): one forward pass (``jax.vjp``),
  then the K backward passes vectorised with ``jax.vmap`` over the rows of the
  identity as cotangents. With ``vectorize=False``: K reverse passes of the
  scalar losses ``L_k`` (``task_grads_list``); under ``jit`` XLA shares
  their forward pass. If ``fun`` returns a tuple of K scalars, each backward
  pass then only runs through what ``L_k`` depends on (JAX prunes the rest),
  which is faster when tasks use different parts of the model (e.g. task
  heads); the traced program is K times larger.

  Args:
    fun: ``fun(params, *args) -> losses``, a (K,) vector or a tuple of K
      scalars, or ``(losses, aux)`` when ``has_aux``.
    has_aux: whether ``fun`` returns auxiliary data.
    vectorize: vmap the K backward passes (True) or trace them separately.

  Returns:
    A function ``(params, *args) -> (losses, task_grads)`` (or
    ``((losses, aux), task_grads)``), ``losses`` a (K,) vector, ``task_grads`` shaped like ``params``
    with a leading task axis K on every leaf ("stacked task gradients").

  Example:
    >>> f = lambda p, x: jnp.stack([jnp.sum(p * x), jnp.sum(p ** 2)])
    >>> losses, grads = value_and_task_grads(f)(jnp.ones(3), jnp.arange(3.0))
    >>> grads.shape
    (2, 3)
  """

  def vectorized(params, *args):
    losses, vjp_fn, aux = losses_vjp(lambda p: fun(p, *args), params, has_aux)
    (task_grads,) = jax.vmap(vjp_fn)(jnp.eye(losses.shape[0], dtype=losses.dtype))
    return ((losses, aux) if has_aux else losses), task_grads

  def separate(params, *args):
    out, grads = task_grads_list(fun, params, *args, has_aux=has_aux)
    return out, stack_trees(grads)

  return vectorized if vectorize else separate
