"""What a weighting is: Gram matrix in, coefficients out.

A *weighting* maps the Gram matrix ``M_ij = <h_i, h_j>`` of the K
task-weighted gradients to K coefficients ``c`` such that the combined update
is ``sum_k c_k h_k``. Most weightings are stateless functions
``gram -> coefficients``; the few that carry state between steps (a PRNG key,
running targets, ...) are a :class:`StatefulWeighting`. :func:`as_stateful`
turns either into the stateful form that the transformations use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from came_grad_jax._numerics import gram_exponent

Array = jax.Array
_F = TypeVar("_F", bound=Callable[..., Any])
#: A stateless weighting: ``(K, K) Gram -> (K,) coefficients``.
Weighting = Callable[[Array], Array]


class StatefulWeighting(NamedTuple):
  """A weighting that carries state between steps.

  Attributes:
    init: ``num_tasks -> state``; the state is a pytree of arrays. ``num_tasks``
      is None when K is unknown until the first update: a weighting whose
      state needs K raises then, saying so.
    apply: ``(gram, state) -> (coefficients, new_state)``.
  """

  init: Callable[[int | None], Any]
  apply: Callable[[Array, Any], tuple[Array, Any]]


AnyWeighting = Weighting | StatefulWeighting


class EmptyState(NamedTuple):
  """The state of a stateless weighting."""


def as_stateful(weighting: AnyWeighting) -> StatefulWeighting:
  """Wrap a stateless weighting (a plain callable) as a :class:`StatefulWeighting`.

  Raises:
    TypeError: if ``weighting`` is neither callable nor a StatefulWeighting.
  """
  if isinstance(weighting, StatefulWeighting):
    return weighting
  if not callable(weighting):
    raise TypeError(
        "weighting must be a callable gram -> coefficients or a "
        f"StatefulWeighting, got {type(weighting).__name__}")
  return StatefulWeighting(
      init=lambda num_tasks: EmptyState(),
      apply=lambda gram, state: (weighting(gram), state))


def check_gram(gram: Array) -> Array:
  """Validate a Gram matrix argument and cast it to float32 or wider.

  Raises:
    ValueError: if ``gram`` is not square (K, K) with K >= 1.
    TypeError: if ``gram`` is not floating point.
  """
  gram = jnp.asarray(gram)
  if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] < 1:
    raise ValueError(f"gram must be a square (K, K) matrix, got shape {gram.shape}")
  if not jnp.issubdtype(gram.dtype, jnp.floating):
    raise TypeError(f"gram must be floating point, got dtype {gram.dtype}")
  return gram.astype(jnp.promote_types(gram.dtype, jnp.float32))


def not_differentiable(fn: _F, method: str, *, min_tasks: int = 2) -> _F:
  """``fn(gram, *args)`` unchanged, except that differentiating it raises a clear error.

  The coefficients of ``method`` come from an iterative solve (a
  ``lax.while_loop``) for ``K >= min_tasks``; JAX cannot differentiate such a
  loop in reverse mode and says so in its own terms. Here ``jax.grad``,
  ``jax.vjp`` and ``jax.jvp`` through the coefficients raise a
  ``NotImplementedError`` that names the method and what to do instead (as
  CAGrad's dual does). Below ``min_tasks`` (closed forms) ``fn`` is returned
  as it is, derivative included. Nothing changes when no input is differentiated.

  Args:
    fn: ``(gram (K, K), *args) -> coefficients`` (or ``(coefficients, state)``).
    method: the method's name, for the message.
    min_tasks: the smallest K whose solve is iterative.

  Returns:
    ``fn`` with the same signature and values.

  Example:
    >>> f = not_differentiable(lambda gram: jnp.diagonal(gram), "Example")
    >>> try:
    ...   jax.grad(lambda m: f(m).sum())(jnp.eye(2))
    ... except NotImplementedError as e:
    ...   print(str(e)[:48])
    jax.grad (or any derivative) through Example's c
  """
  at_k = f" for K >= {min_tasks} tasks" if min_tasks > 1 else ""
  message = (
      f"jax.grad (or any derivative) through {method}'s coefficients is not supported{at_k}: "
      "they come from an iterative solve (lax.while_loop), which JAX cannot differentiate "
      "in reverse mode. Wrap the update in jax.lax.stop_gradient if you differentiate "
      "through the optimizer step.")

  @jax.custom_jvp
  def blocked(*args):
    return fn(*args)

  @blocked.defjvp
  def _raise(primals, tangents):
    del primals, tangents
    raise NotImplementedError(message)

  def wrapped(gram, *args):
    shape = jnp.shape(gram)
    if len(shape) == 2 and shape[0] < min_tasks:
      return fn(gram, *args)
    return blocked(gram, *args)

  return wrapped  # type: ignore[return-value]


def scale_covariant(weighting: Weighting, degree: jax.typing.ArrayLike = 0.0) -> Weighting:
  """``weighting`` solved on the normalised Gram matrix ``M / 2^E``, rescaled: range-safe.

  For a weighting whose coefficients are homogeneous of degree ``p`` in the
  Gram matrix, ``c(s M) = s^p c(M)`` for every ``s > 0`` (``p = 0``: MGDA,
  CAGrad, CAME-Grad and every weighting whose direction and relative size are
  scale-free; ``p = -1/2``: Nash-MTL; ``p = -alpha / (1 + alpha)``: FairGrad),
  the result ``c(M) = 2^(p E) c(M / 2^E)`` (:func:`gram_exponent`) is the same
  in exact arithmetic, but the solve never forms a number near float32's
  limits: gradients of norm 1e19 (Gram entries 1e38) or 1e-15 give the same
  coefficients, up to the scale, as gradients of norm 1.

  Args:
    weighting: ``gram -> coefficients``, homogeneous of degree ``degree``.
    degree: ``p``, a float (or a traced scalar).

  Returns:
    The wrapped weighting, same signature.

  Example:
    >>> w = scale_covariant(lambda m: 1.0 / jnp.sqrt(jnp.diagonal(m)), -0.5)
    >>> c = w(jnp.array([[4e36, 0.0], [0.0, 1e36]]))  # 1 / ||h_k||, ||h_k|| = 2e18, 1e18
    >>> [float(f"{x:.3g}") for x in c]
    [5e-19, 1e-18]
  """

  def normalised(gram: Array) -> Array:
    gram = check_gram(gram)
    e = gram_exponent(gram)
    coeffs = weighting(jnp.ldexp(gram, -e))
    if isinstance(degree, (int, float)) and degree == 0:
      return coeffs
    return coeffs * jnp.exp2(jnp.asarray(degree, coeffs.dtype) * e.astype(coeffs.dtype))

  return normalised


def scale_covariant_stateful(weighting: StatefulWeighting) -> StatefulWeighting:
  """:func:`scale_covariant` (degree 0) for a stateful weighting whose state is scale-free.

  For weightings whose coefficients do not change when ``M`` is scaled and whose
  state holds no Gram-scale quantity (PRNG keys, cosine targets): the state
  passes through unchanged.
  """

  def apply(gram: Array, state: Any) -> tuple[Array, Any]:
    gram = check_gram(gram)
    return weighting.apply(jnp.ldexp(gram, -gram_exponent(gram)), state)

  return StatefulWeighting(weighting.init, apply)
