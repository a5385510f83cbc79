"""Per-task gradients: one forward pass, K backward passes."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def check_losses(losses, has_aux: bool) -> int:
  """K, after checking that ``losses`` is a floating vector."""
  shape = getattr(losses, "shape", None)
  if shape is None or len(shape) != 1:
    raise ValueError(
        "fun must return a vector of K losses (shape (K,)), got "
        f"{shape if shape is not None else type(losses).__name__}"
        + ("; with has_aux=True return (losses, aux)" if has_aux else ""))
  if not jnp.issubdtype(losses.dtype, jnp.floating):
    raise TypeError(f"fun must return floating point losses, got {losses.dtype}")
  return shape[0]


def losses_vjp(closed: Callable[[Any], Any], params: Any, has_aux: bool):
  """``(losses, vjp_fn, aux)`` of ``closed(params)`` (aux None without has_aux), checked."""
  if has_aux:
    losses, vjp_fn, aux = jax.vjp(closed, params, has_aux=True)
  else:
    (losses, vjp_fn), aux = jax.vjp(closed, params), None
  check_losses(losses, has_aux)
  return losses, vjp_fn, aux


def value_and_task_grads(fun: Callable[..., Any], *, has_aux: bool = False,
                         vectorize: bool = True) -> Callable[..., tuple[Any, Any]]:
  """Like ``jax.value_and_grad`` for a function returning a vector of K losses.

  ``task_grads[k] = d losses[k] / d params``, with respect to the first
  argument. With ``vectorize=True`` (default): one forward pass (``jax.vjp``),
  then the K backward passes vectorised with ``jax.vmap`` over the rows of the
  identity as cotangents. With ``vectorize=False``: K reverse passes of the
  scalar losses ``L_k``; under ``jit`` XLA shares their forward pass, and each
  backward pass only runs through what ``L_k`` depends on (JAX prunes the
  rest), which is faster when tasks use different parts of the model (e.g.
  task heads) and costs K times the traced program size.

  Args:
    fun: ``fun(params, *args) -> losses`` with ``losses`` of shape (K,), or
      ``(losses, aux)`` when ``has_aux``.
    has_aux: whether ``fun`` returns auxiliary data.
    vectorize: vmap the K backward passes (True) or trace them separately.

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

  def split(out):
    return out if has_aux else (out, None)

  def vectorized(params, *args):
    losses, vjp_fn, aux = losses_vjp(lambda p: fun(p, *args), params, has_aux)
    (task_grads,) = jax.vmap(vjp_fn)(jnp.eye(losses.shape[0], dtype=losses.dtype))
    return ((losses, aux) if has_aux else losses), task_grads

  def separate(params, *args):
    k = check_losses(split(jax.eval_shape(fun, params, *args))[0], has_aux)
    grads = []
    for i in range(k):
      task_loss = lambda p, i=i: (lambda out: (out[0][i], out))(split(fun(p, *args)))
      grad, (losses, aux) = jax.grad(task_loss, has_aux=True)(params)
      grads.append(grad)
    task_grads = jax.tree.map(lambda *g: jnp.stack(g), *grads)
    return ((losses, aux) if has_aux else losses), task_grads

  return vectorized if vectorize else separate
