"""IMTL-G (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021).

The update has the same projection on every task's unit gradient
``u_k = h_k / ||h_k||``, with coefficients summing to one::

    <d, u_1> = <d, u_2> = ... = <d, u_K>,   d = sum_k alpha_k h_k,   sum_k alpha_k = 1.

In the variables ``beta_k = ||h_k|| alpha_k`` (so that ``d = sum_k beta_k u_k``)
these are K + 1 linear equations in ``(beta, t)``::

    C beta = t 1,    sum_k beta_k / ||h_k|| = 1,

``C`` the cosine matrix: the paper's closed form ``alpha_{2:K} = g_1 U^T
(D U^T)^{-1}`` written with a well-conditioned matrix whatever the tasks'
scales. Where no direction has equal non-zero projections (two exactly opposed
gradients, more tasks than dimensions) the solution is ``d = 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax._numerics import correlation
from came_grad_jax.weightings._base import Weighting, check_gram, scale_covariant

Array = jax.Array


def imtl_g() -> Weighting:
  """IMTL-G: ``alpha`` with equal projections ``<d, u_k>`` and ``sum_k alpha_k = 1``.

  Solved as the bordered system ``[[C, -1], [w^T, 0]] [beta; t] = [0; 1]``
  (``w_k = 1 / ||h_k||``, scaled to a largest entry of 1) by a pseudo-inverse,
  which picks the least-norm solution where it is not unique (parallel
  gradients). Zero gradients take no part (``alpha_k = 0``); all-zero
  gradients give ``alpha = 0``.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``; they may be negative.

  Example:
    >>> c = imtl_g()(jnp.array([[1.0, 0.0], [0.0, 4.0]]))  # d = (2/3) h1 + (1/3) h2
    >>> [round(float(x), 4) for x in c]
    [0.6667, 0.3333]
  """

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    cosine, norms = correlation(gram)
    present = norms > 0
    safe = jnp.where(present, norms, 1.0)
    # Absent tasks keep their unit row with a 0 in the t column: beta_k = 0.
    w = jnp.where(present, 1.0 / safe, 0.0)
    w_max = jnp.max(w)
    w_scale = jnp.where(w_max > 0, w_max, 1.0)
    bordered = jnp.block([[cosine, -present[:, None].astype(gram.dtype)],
                          [w[None, :] / w_scale, jnp.zeros((1, 1), gram.dtype)]])
    rhs = jnp.zeros((k + 1,), gram.dtype).at[k].set(jnp.where(w_max > 0, 1.0 / w_scale, 0.0))
    beta = (jnp.linalg.pinv(bordered) @ rhs)[:k]
    return jnp.where(present, beta / safe, 0.0)

  return scale_covariant(weighting)
