"""CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021)."""

from __future__ import annotations

import jax

from came_grad_jax import hyperparams
from came_grad_jax.weightings.base import Weighting
from came_grad_jax.weightings.came import rectify

Array = jax.Array


def cagrad(c: float = 0.4, *, rescale: bool = True) -> Weighting:
  """CAGrad: ``d = mu + c ||mu|| h_alpha* / ||h_alpha*||``, divided by ``1 + c^2``.

  The direction is CAME-Grad's S1 (:func:`rectify`) with radius ``rho = c``;
  ``rescale`` applies the ``1 / (1 + c^2)`` factor of the reference
  implementation.

  Args:
    c: conflict radius relative to ``||mu||``, >= 0.
    rescale: divide by ``1 + c^2`` as the authors' code does by default.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Example:
    >>> import jax.numpy as jnp
    >>> cagrad(0.4)(jnp.eye(3)).shape
    (3,)
  """
  hyperparams.check_scalar("c", c, lower=0.0)
  factor = 1.0 / (1.0 + c**2) if rescale else 1.0

  def weighting(gram: Array) -> Array:
    return factor * rectify(gram, c)

  return weighting
