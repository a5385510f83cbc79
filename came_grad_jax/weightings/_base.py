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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
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
