"""Krum and Multi-Krum (Blanchard et al., "Machine Learning with Adversaries: Byzantine
Tolerant Gradient Descent", NeurIPS 2017).

Each gradient is scored by the sum of its *squared* distances to its ``K - f - 2``
nearest other gradients (``f`` the number of Byzantine gradients tolerated), as in
the paper's definition of Krum; the ``m`` lowest-scored gradients are averaged::

    s_i = sum_{j in N_i} ||h_i - h_j||^2,    d = (1/m) sum_{i in S} h_i,

``S`` the ``m`` smallest scores (ties to the lower index). The squared distances
come from ``M``: ``||h_i - h_j||^2 = M_ii + M_jj - 2 M_ij``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax.weightings._base import Weighting, check_gram, scale_covariant

Array = jax.Array


def _check_count(name: str, value: int, lower: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < lower:
    raise ValueError(f"{name} must be an int >= {lower}, got {value!r}")
  return value


def check_num_tasks(num_tasks: int, n_byzantine: int, n_selected: int) -> None:
  """Refuse a K that Krum cannot work with: it needs ``K >= f + 3`` and ``K >= m``.

  Raises:
    ValueError: naming ``n_byzantine`` or ``n_selected`` and the K given.

  Example:
    >>> check_num_tasks(3, 0, 1)
  """
  if num_tasks < n_byzantine + 3:
    raise ValueError(f"krum with n_byzantine={n_byzantine} needs K >= {n_byzantine + 3} "
                     f"tasks, got K = {num_tasks}")
  if num_tasks < n_selected:
    raise ValueError(f"krum with n_selected={n_selected} needs K >= {n_selected} tasks, "
                     f"got K = {num_tasks}")


def krum(n_byzantine: int = 0, n_selected: int = 1) -> Weighting:
  """Krum: ``c = 1/m`` on the ``m`` gradients closest to their neighbours, 0 elsewhere.

  ``s_i = sum_{j in N_i} ||h_i - h_j||^2`` over the ``K - f - 2`` nearest other
  gradients ``N_i``; ``c_i = 1/m`` for the ``m`` smallest ``s_i``.

  Args:
    n_byzantine: ``f >= 0``, the number of adversarial gradients tolerated;
      Krum needs ``K >= f + 3``.
    n_selected: ``m >= 1`` gradients averaged (Multi-Krum for ``m > 1``), ``m <= K``.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Raises:
    ValueError: for a bad hyperparameter, or (when called) K < f + 3 or K < m.

  Notes:
    The scores follow Blanchard et al. (2017), Section 4: sums of *squared*
    distances. TorchJD's ``KrumWeighting(n_byzantine, n_selected)`` (0.18) sums
    the plain distances instead, which can select a different gradient: with
    the rows ``[-2, 2], [1, -3], [-1, 3], [0, -3], [2, 2]`` and ``f = 0`` the squared
    scores are ``[47, 61, 49, 59, 52]`` and select ``[-2, 2]`` while the plain ones
    select ``[-1, 3]``. Otherwise the weights are the same (the mean of the
    selected rows). Krum is a robust aggregator for distributed learning,
    included for comparison: it picks some tasks' gradients and drops the others.

  References:
    Peva Blanchard, El Mahdi El Mhamdi, Rachid Guerraoui, Julien Stainer, "Machine
    Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017.
    https://papers.nips.cc/paper/6617-machine-learning-with-adversaries-byzantine-tolerant-gradient-descent

  Example:
    >>> h = jnp.array([[1.0, 0.0], [1.1, 0.0], [0.9, 0.1], [-5.0, 3.0]])
    >>> krum(n_byzantine=1)(h @ h.T)  # the outlier is never selected
    Array([1., 0., 0., 0.], dtype=float32)
  """
  f = _check_count("n_byzantine", n_byzantine, 0)
  m = _check_count("n_selected", n_selected, 1)

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    check_num_tasks(k, f, m)
    diag = jnp.diagonal(gram)
    sq_distances = jnp.maximum(diag[:, None] + diag[None, :] - 2.0 * gram, 0.0)
    # Each row's own distance (0) sorts first and is skipped.
    nearest = jnp.sort(sq_distances, axis=1)[:, 1:k - f - 1]
    scores = jnp.sum(nearest, axis=1)
    selected = jnp.argsort(scores, stable=True)[:m]
    return jnp.sum(jax.nn.one_hot(selected, k, dtype=gram.dtype), axis=0) / m

  return scale_covariant(weighting)
