"""ConFIG (Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks", ICLR 2025).

The direction is the one with equal cosines to every task gradient, from the
pseudo-inverse of the unit gradients ``U`` (rows ``u_k = h_k / ||h_k||``), and
its length the sum of the gradients' projections on it::

    x = U^+ p,    t = x / ||x||,    d = (sum_k <h_k, t>) t,

``p`` the preference vector (all ones by default). Everything is Gram-expressible:
``x = U^T C^+ p`` with ``C = U U^T`` the cosine matrix, so ``x = sum_k beta_k u_k``
with ``beta = C^+ p`` and ``||x||^2 = beta^T C beta``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from came_grad_jax._numerics import correlation, safe_divide
from came_grad_jax.weightings._base import Weighting, check_gram, scale_covariant

Array = jax.Array


def config(preference: jax.typing.ArrayLike | None = None) -> Weighting:
  """ConFIG: ``d = (sum_k <h_k, t>) t`` with ``t`` the unit vector of ``U^+ p``.

  When the task gradients are linearly independent, ``U x = p`` holds exactly:
  every unit gradient has the projection ``p_k / ||x||`` on ``t`` and, for
  ``p > 0``, no task conflicts with ``d``. With more tasks than dimensions (or
  parallel gradients) ``x`` is the least-squares solution and may conflict.
  Zero gradients take no part (``c_k = 0``); if ``x = 0`` the update is 0.

  Args:
    preference: ``p`` (K,), the target cosines' proportions; None means all
      ones (the paper's and TorchJD's default).

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Raises:
    ValueError: if ``preference`` is not a finite vector or does not have K entries.

  Notes:
    TorchJD's ``ConFIG(pref_vector)`` computes the same direction and the
    length ``sum_k <g_k, t>`` from the rows it is given; here the rows are the
    task-weighted ``h_k = w_k g_k``, so task weights change the length (not the
    direction, which depends only on the unit gradients and ``p``).

  References:
    Qiang Liu, Mengyu Chu, Nils Thuerey, "ConFIG: Towards Conflict-free Training of
    Physics Informed Neural Networks", ICLR 2025. https://arxiv.org/abs/2408.11104

  Example:
    >>> c = config()(jnp.array([[1.0, 0.0], [0.0, 4.0]]))  # t = (u1 + u2) / sqrt(2)
    >>> [round(float(x), 4) for x in c]  # d = 1.5 u1 + 1.5 u2 = 1.5 h1 + 0.75 h2
    [1.5, 0.75]
  """
  if preference is not None:
    preference = np.asarray(preference, dtype=np.float64)
    if preference.ndim != 1 or not np.all(np.isfinite(preference)):
      raise ValueError(f"preference must be a finite vector of K entries, got {preference!r}")

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    if preference is not None and preference.shape != (k,):
      raise ValueError(f"preference has {preference.shape[0]} entries but the Gram matrix "
                       f"is for K = {k} tasks")
    cosine, norms = correlation(gram)
    present = norms > 0
    p = jnp.ones((k,), gram.dtype) if preference is None else jnp.asarray(preference, gram.dtype)
    # Zero gradients are zero rows of U: no equation, beta_k = 0 on the decoupled unit row.
    beta = jnp.linalg.pinv(cosine, hermitian=True) @ jnp.where(present, p, 0.0)
    beta = jnp.where(present, beta, 0.0)
    x_sq = beta @ cosine @ beta
    length_times_x = norms @ (cosine @ beta)  # sum_k <h_k, x> = ||x|| * length
    return safe_divide(length_times_x, x_sq) * safe_divide(beta, norms)

  return scale_covariant(weighting)
