"""SDMGrad (Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning: Simple and
Provable Stochastic Algorithms", NeurIPS 2023).

MGDA's min-norm problem regularised toward the mean gradient ``mu``::

    w* = argmin_{w in simplex} 1/2 ||sum_k w_k h_k + lambda mu||^2,
    d = (sum_k w*_k h_k + lambda mu) / (1 + lambda).

Because ``sum_k w_k = 1``, ``sum_k w_k h_k + lambda mu = sum_k w_k (h_k + lambda mu)``:
``w*`` is the min-norm point of the shifted gradients ``h_k + lambda mu``, whose
Gram matrix is read off ``M``, and is solved exactly by MGDA's solver.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax.weightings._base import (
  Weighting,
  check_gram,
  not_differentiable,
  scale_covariant,
)
from came_grad_jax.weightings._mgda import min_norm_point

Array = jax.Array


def shifted_gram(gram: Array, lam: Array | float) -> Array:
  """The Gram matrix of ``h_k + lam mu``, ``mu = (1/K) sum_k h_k``.

  Example:
    >>> shifted_gram(jnp.eye(2), 1.0)  # h_k + (h_1 + h_2) / 2
    Array([[2.5, 1.5],
           [1.5, 2.5]], dtype=float32)
  """
  k = gram.shape[0]
  m_mu = jnp.mean(gram, axis=1)  # <h_i, mu>
  mu_sq = jnp.mean(m_mu)  # ||mu||^2
  return gram + lam * (m_mu[:, None] + m_mu[None, :]) + lam**2 * mu_sq * jnp.ones((k, k))


def sdmgrad(lam: float = 0.3) -> Weighting:
  """SDMGrad (deterministic): ``c = (w* + lambda / K) / (1 + lambda)``.

  ``lambda = 0`` is MGDA; ``lambda -> inf`` approaches the mean gradient.

  Args:
    lam: ``lambda >= 0``, the pull toward the mean gradient (the paper's and
      LibMTL's default 0.3).

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``, summing to 1.

  Raises:
    ValueError: if ``lam`` is negative or not finite.

  Notes:
    The paper's SDMGrad is stochastic: ``w`` takes projected gradient steps
    (LibMTL: 20 per step) on ``G(xi)^T (G(xi') w + lambda g0(xi'))`` from two
    independent batches ``xi, xi'``, which makes the estimate unbiased. With
    one batch the problem is deterministic and this solves it exactly; for the
    double-sampling variant, call the weighting on the cross Gram matrix of two
    batches yourself. TorchJD's ``SDMGradWeighting`` takes that cross matrix
    ``J_1 J_2^T``, normalises it by its mean diagonal root, and takes 20 momentum
    SGD steps (lr 10, momentum 0.5) on ``w``, warm-started from the previous call;
    its returned weights ``(w + lambda / K) / (1 + lambda)`` are the same
    convention as here, at the problem's solution.

  References:
    Peiyao Xiao, Hao Ban, Kaiyi Ji, "Direction-oriented Multi-objective Learning:
    Simple and Provable Stochastic Algorithms", NeurIPS 2023.
    https://arxiv.org/abs/2305.18409

  Example:
    >>> c = sdmgrad(0.0)(jnp.array([[1.0, 0.0], [0.0, 4.0]]))  # MGDA: (0.8, 0.2)
    >>> [round(float(x), 4) for x in c]
    [0.8, 0.2]
  """
  hyperparams.check_scalar("lam", lam, lower=0.0)

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    w = min_norm_point(shifted_gram(gram, lam))
    return (w + lam / k) / (1.0 + lam)

  return not_differentiable(scale_covariant(weighting), "SDMGrad", min_tasks=3)
