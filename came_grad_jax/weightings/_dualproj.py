"""DualProj (TorchJD; Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024).

The mean gradient projected onto the dual cone of the task gradients::

    d = pi_C((1/K) sum_k h_k),    C = {x : <h_k, x> >= 0 for every k}.

Unlike :func:`~came_grad_jax.weightings._upgrad`, which projects each task
gradient and then averages, DualProj averages first and projects once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax.weightings._base import (
  Weighting,
  check_gram,
  not_differentiable,
  scale_covariant,
)
from came_grad_jax.weightings._upgrad import dual_cone_weights

Array = jax.Array


def dualproj() -> Weighting:
  """DualProj: ``c = 1/K + lambda*``, the dual-cone projection weights of the mean gradient.

  ``d = pi_C(mu)``, ``mu = (1/K) sum_k h_k``: the closest vector to ``mu`` that
  conflicts with no task (``<h_k, d> >= 0`` for every k).

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Example:
    >>> dualproj()(jnp.array([[1.0, -1.0], [-1.0, 2.0]]))  # <h1, mu> = 0: mu stays
    Array([0.5, 0.5], dtype=float32)
  """

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    return dual_cone_weights(gram, jnp.full((k,), 1.0 / k, gram.dtype))

  return not_differentiable(scale_covariant(weighting), "DualProj")
