"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024).

Each task gradient is projected onto the dual cone of all of them,
``C = {x : <h_k, x> >= 0 for every k}``, and the projections are averaged::

    d = (1/K) sum_i pi_C(h_i).

Projections are computed in weights (:func:`dual_cone_weights`): by Moreau's
decomposition, ``pi_C(sum_k u_k h_k) = sum_k (u_k + lambda*_k) h_k`` with
``lambda* = argmin_{lambda >= 0} (u + lambda)^T M (u + lambda)``, a non-negative
least-squares problem in K variables, solved exactly on the device by the
Lawson-Hanson active-set method (:func:`nonnegative_qp`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax._active_set import nonnegative_qp
from came_grad_jax._numerics import correlation
from came_grad_jax.weightings._base import (
  Weighting,
  check_gram,
  not_differentiable,
  scale_covariant,
)

Array = jax.Array


def dual_cone_weights(gram: Array, u: Array) -> Array:
  """Weights ``w`` of the projection of ``sum_k u_k h_k`` onto the dual cone of the ``h_k``.

  ``w = u + lambda*``, ``lambda* = argmin_{lambda >= 0} (u + lambda)^T M
  (u + lambda)``, so that ``sum_k w_k h_k = pi_C(sum_k u_k h_k)`` with
  ``C = {x : <h_k, x> >= 0 for all k}``. The non-negative orthant is invariant
  under a positive diagonal rescaling, so the problem is solved on the cosine
  matrix ``D^-1 M D^-1`` (``D = diag ||h_k||``): a task 1e-6 the size of
  another is treated like any other. Zero gradients get ``lambda*_k = 0``.

  Args:
    gram: Gram matrix ``M`` (K, K), float32 or wider.
    u: weights (K,) of the vector to project.

  Returns:
    ``w`` (K,), ``w >= u``.

  Example:
    >>> m = jnp.array([[1.0, -1.0], [-1.0, 2.0]])  # <h1, h2> < 0
    >>> w = dual_cone_weights(m, jnp.array([1.0, 0.0]))  # h1 + h2 / 2 is orthogonal to h2
    >>> [round(float(x), 4) for x in w]
    [1.0, 0.5]
  """
  cosine, norms = correlation(gram)
  safe = jnp.where(norms > 0, norms, 1.0)
  lam, _ = nonnegative_qp(cosine, cosine @ (u * safe))
  return jnp.where(norms > 0, u + lam / safe, u)


def upgrad() -> Weighting:
  """UPGrad: ``c = (1/K) sum_i w^(i)``, ``w^(i)`` the dual-cone projection weights of ``h_i``.

  ``d = (1/K) sum_i pi_C(h_i)`` with ``C = {x : <h_k, x> >= 0 for all k}``, so
  ``<h_k, d> >= 0`` for every k (non-conflicting); ``d`` is the mean gradient
  when no pair of tasks conflicts.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Example:
    >>> import jax.numpy as jnp
    >>> upgrad()(jnp.array([[1.0, -1.0], [-1.0, 2.0]]))
    Array([1.  , 0.75], dtype=float32)
  """

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    per_task = jax.vmap(lambda u: dual_cone_weights(gram, u))(jnp.eye(k, dtype=gram.dtype) / k)
    return jnp.sum(per_task, axis=0)

  return not_differentiable(scale_covariant(weighting), "UPGrad")
