"""DB-MTL's gradient-magnitude balancing (Lin et al., "Dual-Balancing for Multi-Task
Learning", 2023).

Every task gradient is rescaled to the largest task-gradient norm::

    d = max_j ||h_j|| sum_k h_k / ||h_k||,

applied by the paper to the gradients of the log losses ``log L_k`` (its loss-scale
balancing), tracked by an exponential moving average (:func:`came_grad_jax.db_mtl`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax._numerics import safe_divide, safe_sqrt
from came_grad_jax.weightings._base import Weighting, check_gram, scale_covariant

Array = jax.Array


def max_norm_balancing() -> Weighting:
  """``c_k = max_j ||h_j|| / ||h_k||``: every task gradient rescaled to the largest norm.

  The direction is the sum of the unit gradients (invariant to each task's
  scale); the size is set by the largest gradient. Zero gradients get ``c_k = 0``.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  References:
    Baijiong Lin, Weisen Jiang, Feiyang Ye, Yu Zhang, Pengguang Chen, Ying-Cong Chen,
    Shu Liu, James T. Kwok, "Dual-Balancing for Multi-Task Learning", arXiv:2308.12029, 2023.
    https://arxiv.org/abs/2308.12029

  Example:
    >>> max_norm_balancing()(jnp.array([[1.0, 0.0], [0.0, 4.0]]))  # norms (1, 2)
    Array([2., 1.], dtype=float32)
  """

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    norms = safe_sqrt(jnp.diagonal(gram))  # jax.grad-safe at a zero task gradient
    return safe_divide(jnp.max(norms), norms)

  return scale_covariant(weighting)
