"""Per-task gradients in one forward pass and K vectorised backward passes."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def value_and_task_grads(fun: Callable[..., Any], *, has_aux: bool = False
                         ) -> Callable[..., tuple[Any, Any]]:
  """Like ``jax.value_and_grad`` for a function returning a vector of K losses.

  ``task_grads[k] = d losses[k] / d params``: one forward pass (``jax.vjp``),
  then the K backward passes vectorised with ``jax.vmap`` over the rows of the
  identity as cotangents. Gradients are taken with respect to the first
  argument.

  Args:
    fun: ``fun(params, *args) -> losses`` with ``losses`` of shape (K,), or
      ``(losses, aux)`` when ``has_aux``.
    has_aux: whether ``fun`` returns auxiliary data.

  Returns:
    A function ``(params, *args) -> (losses, task_grads)`` (or
    ``((losses, aux), task_grads)``), ``task_grads`` shaped like ``params``
    with a leading task axis K on every leaf ("stacked task gradients").

  Example:
    >>> f = lambda p, x: jnp.stack([jnp.sum(p * x), jnp.sum(p ** 2)])
    >>> losses, grads = value_and_task_grads(f)(jnp.ones(3), jnp.arange(3.0))
    >>> grads.shape
    (2, 3)
  """

  def wrapped(params, *args):
    closed = lambda p: fun(p, *args)
    if has_aux:
      losses, vjp_fn, aux = jax.vjp(closed, params, has_aux=True)
    else:
      losses, vjp_fn = jax.vjp(closed, params)
    if not isinstance(losses, jax.Array) or losses.ndim != 1:
      raise ValueError(
          "fun must return a vector of K losses (shape (K,)), got "
          f"{getattr(losses, 'shape', type(losses).__name__)}"
          + ("; with has_aux=True return (losses, aux)" if has_aux else ""))
    if not jnp.issubdtype(losses.dtype, jnp.floating):
      raise TypeError(f"fun must return floating point losses, got {losses.dtype}")
    cotangents = jnp.eye(losses.shape[0], dtype=losses.dtype)
    (task_grads,) = jax.vmap(vjp_fn)(cotangents)
    return ((losses, aux) if has_aux else losses), task_grads

  return wrapped
