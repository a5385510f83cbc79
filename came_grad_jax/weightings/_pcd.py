"""Priority-constrained descent (PCD): the mean gradient, projected so that it conflicts
with none of the *protected* (high-priority) tasks::

    d = pi_{C_P}((1/K) sum_k h_k),    C_P = {x : <h_p, x> >= 0 for every p in P}.

Between DualProj (every task protected) and linear scalarization (none): the
other tasks may be traded off, the protected ones never lose to first order.
As in :mod:`~came_grad_jax.weightings._upgrad`, the projection is computed in
weights by Moreau's decomposition, ``d = sum_k (1/K) h_k + sum_{p in P} lambda*_p h_p``
with ``lambda* = argmin_{lambda >= 0} ||mu + H_P^T lambda||^2``, an exact NNLS.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from came_grad_jax._active_set import nonnegative_qp
from came_grad_jax._numerics import correlation, safe_divide
from came_grad_jax.weightings._base import Weighting, check_gram

Array = jax.Array


def pcd(protected: Sequence[int] = (0,)) -> Weighting:
  """PCD: ``c = 1/K + lambda*`` (``lambda*`` non-zero only on the protected tasks).

  Args:
    protected: indices of the tasks the update must not conflict with (the
      high-priority tasks); by default the first task.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Raises:
    ValueError: for an empty, repeated or negative index list, or (when
      called) an index >= K.

  Notes:
    This is the library's definition (the projection above). TorchJD lists a
    "PCD" aggregator whose source was not available to check against here; port
    with care. With every task protected it is :func:`dualproj`.

  References:
    Pierre Quinton, Valérian Rey, "Jacobian Descent for Multi-Objective
    Optimization", arXiv:2406.16232, 2024 (dual-cone projections).
    https://arxiv.org/abs/2406.16232

  Example:
    >>> m = jnp.array([[1.0, -1.0], [-1.0, 2.0]])  # <h1, mu> = 0: nothing to correct
    >>> pcd((1,))(m)
    Array([0.5, 0.5], dtype=float32)
    >>> c = pcd((0,))(jnp.array([[1.0, -2.0], [-2.0, 9.0]]))  # <h1, mu> < 0: h1 added
    >>> [round(float(x), 4) for x in c]
    [1.0, 0.5]
  """
  index = np.asarray(protected)
  if (index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer)
      or np.any(index < 0) or len(set(index.tolist())) != index.size):
    raise ValueError(f"protected must be distinct task indices >= 0, got {protected!r}")

  def weighting(gram: Array) -> Array:
    gram = check_gram(gram)
    k = gram.shape[0]
    if index.max() >= k:
      raise ValueError(f"protected names task {int(index.max())} but K = {k}")
    u = jnp.full((k,), 1.0 / k, gram.dtype)
    sub = gram[np.ix_(index, index)]
    cosine, norms = correlation(sub)
    # In z = ||h_p|| lambda_p: minimise 1/2 z^T C z + z^T (M u)_P / ||h_p||.
    z, _ = nonnegative_qp(cosine, safe_divide((gram @ u)[index], norms))
    lam = safe_divide(z, norms)
    return u.at[index].add(lam)

  return weighting
