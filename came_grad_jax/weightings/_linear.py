"""Linear scalarization: the gradient of ``sum_k w_k L_k``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax.weightings._base import Weighting, check_gram

Array = jax.Array


def linear_scalarization() -> Weighting:
  """Coefficients ``c = 1``: the update is ``g_joint = sum_k w_k g_k``.

  Example:
    >>> linear_scalarization()(jnp.eye(3))
    Array([1., 1., 1.], dtype=float32)
  """

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    return jnp.ones(gram.shape[0], gram.dtype)

  return weighting
