"""Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023).

The task gradients are replaced by an orthogonal set of equal norms spanning
the same space, the closest one (orthogonal Procrustes) to the originals.
With the eigendecomposition ``M = V Lambda V^T`` (rank r, numerical rank as in
the authors' code: eigenvalues above ``K eps lambda_max``), the aligned
gradients are ``H_hat = B H`` with::

    B = sigma V_r Lambda_r^{-1/2} V_r^T,

so that ``H_hat H_hat^T = sigma^2 V_r V_r^T``; the update is their sum,
``d = 1^T B H``, i.e. coefficients ``c = B 1``. ``sigma^2`` is the smallest kept
eigenvalue (``scale="min"``, the paper's choice), their median or their mean.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from came_grad_jax._numerics import safe_divide
from came_grad_jax.weightings._base import Weighting, check_gram, scale_covariant

Array = jax.Array
Scale = Literal["min", "median", "rmse"]


def _scale_sq(eigenvalues: Array, kept: Array, scale: Scale) -> Array:
  """``sigma^2`` from the kept eigenvalues: min, lower median or mean."""
  if scale == "min":
    return jnp.min(jnp.where(kept, eigenvalues, jnp.inf))
  if scale == "median":
    ascending = jnp.sort(jnp.where(kept, eigenvalues, jnp.inf))
    return ascending[(jnp.sum(kept) - 1) // 2]
  return jnp.sum(jnp.where(kept, eigenvalues, 0.0)) / jnp.maximum(jnp.sum(kept), 1)


def aligned_mtl(scale: Scale = "min") -> Weighting:
  """Aligned-MTL: ``c = sigma V_r Lambda_r^{-1/2} V_r^T 1``.

  The aligned gradients are orthogonal with norm ``sigma``: for orthogonal task
  gradients of equal norms ``c = 1`` (linear scalarization). All-zero gradients
  give ``c = 0``.

  Args:
    scale: ``sigma^2`` is the smallest ("min", the paper's), the lower median
      ("median") or the mean ("rmse") of the kept eigenvalues of ``M``.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Raises:
    ValueError: if ``scale`` is not one of "min", "median", "rmse".

  Notes:
    The update is the *sum* of the aligned gradients, ``1^T B H``, as in the
    paper; TorchJD 0.18's ``AlignedMTL`` returns their mean, ``K`` times
    shorter: multiply its learning rate by ``K`` (or this one's by ``1/K``)
    when switching.

  Example:
    >>> aligned_mtl()(jnp.array([[4.0, 0.0], [0.0, 1.0]]))  # both aligned to norm 1
    Array([0.5, 1. ], dtype=float32)
  """
  if scale not in ("min", "median", "rmse"):
    raise ValueError(f'scale must be "min", "median" or "rmse", got {scale!r}')

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    eigenvalues, vectors = jnp.linalg.eigh(gram)
    tol = jnp.max(eigenvalues) * k * jnp.finfo(gram.dtype).eps
    kept = eigenvalues > tol
    sigma_sq = _scale_sq(eigenvalues, kept, scale)
    gain = jnp.sqrt(safe_divide(sigma_sq, eigenvalues, where=kept))
    return vectors @ (gain * (vectors.T @ jnp.ones((k,), gram.dtype)))

  return scale_covariant(weighting)
