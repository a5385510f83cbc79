"""IMTL-G (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021).

The update has the same projection on every task's unit gradient
``u_k = h_k / ||h_k||``::

    <d, u_1> = <d, u_2> = ... = <d, u_K>,   d = sum_k alpha_k h_k,   sum_k alpha_k = 1.

With ``M = D C D`` (``D = diag ||h_k||``, ``C`` the cosine matrix) the
condition reads ``M alpha = t D 1``, hence ``alpha ∝ D^-1 C^+ 1``, normalised to
sum to 1 (the paper's closed form ``alpha_{2:K} = g_1 U^T (D U^T)^-1``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax import solvers
from came_grad_jax.weightings.base import Weighting, check_gram

Array = jax.Array


def imtl_g() -> Weighting:
  """IMTL-G: ``c ∝ D^-1 C^+ 1`` with ``sum_k c_k = 1``.

  Solving on the cosine matrix ``C`` rather than on ``M`` keeps the
  pseudo-inverse's cut-off away from the tasks' scales: a task 1e-6 the size of
  another still gets its equal projection. Zero gradients get ``c_k = 0``; when
  no direction has equal projections (``sum_k alpha_k`` is rounding noise, e.g.
  two exactly opposed gradients) the coefficients are 0.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``; they may be negative.

  Example:
    >>> imtl_g()(jnp.array([[1.0, 0.0], [0.0, 4.0]]))  # d = (2/3) h1 + (1/3) h2
    Array([0.6666667 , 0.33333334], dtype=float32)
  """

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
    present = norms > 0
    safe = jnp.where(present, norms, 1.0)
    cosine = gram / jnp.outer(safe, safe)
    v = jnp.linalg.pinv(cosine, hermitian=True) @ present.astype(gram.dtype)
    alpha = jnp.where(present, v / safe, 0.0)
    total = jnp.sum(alpha)
    degenerate = solvers.is_negligible(jnp.abs(total), jnp.sum(jnp.abs(alpha)), gram.shape[0])
    return jnp.where(degenerate, 0.0, alpha / jnp.where(degenerate, 1.0, total))

  return weighting
