"""CAME-Grad as a weighting, one function per stage.

Notation (``docs/design.md``): ``h_k = w_k g_k`` the task-weighted gradients, ``M`` their
Gram matrix, ``g_joint = sum_k h_k`` (what linear scalarization follows) and
``mu = g_joint / K``. Every stage returns coefficients ``c`` (K,) of a vector
``sum_k c_k h_k``, so the stages compose as functions of ``M``:

* S1 :func:`rectify`: ``u_rect = argmax_u min_k <h_k, u>`` s.t.
  ``||u - mu|| <= rho ||mu||``, i.e. ``u_rect = mu + lambda h_alpha*``.
* S2 :func:`inject_energy`: ``u_en = kappa (||g_joint|| / ||u_rect||) u_rect``.
* S3 :func:`fuse`: ``g_final = (1 - nu) u_en + nu g_joint``.
* :func:`came`: ``S3(S2(S1(M)))``.

This is the library's reconstruction of the paper's optimizer (its source is
not public); see the README.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._numerics import norm_of, safe_divide
from came_grad_jax.weightings._base import Weighting, check_gram, scale_covariant
from came_grad_jax.weightings._cagrad import conflict_averse_direction

Array = jax.Array


def joint_norm(gram: Array) -> Array:
  """``||g_joint|| = sqrt(1^T M 1)``, 0 where the tasks cancel to rounding noise."""
  gram = check_gram(gram)
  return norm_of(gram, jnp.ones(gram.shape[0], gram.dtype))


def rectify(gram: Array, rho: jax.typing.ArrayLike) -> Array:
  """S1, conflict-averse direction rectification: coefficients of ``u_rect``.

  ``u_rect = mu + lambda h_alpha*`` with ``lambda = rho ||mu|| / ||h_alpha*||``
  and ``alpha*`` the solution of the dual on the simplex
  (CAGrad's dual with radius ``rho``, :func:`came_grad_jax.weightings.cagrad`). Returns
  ``a = 1/K + lambda alpha*`` so that ``u_rect = sum_k a_k h_k``. ``rho = 0``
  gives ``mu``. Where ``h_alpha*`` vanishes (Pareto-stationary) every ``u`` of the
  ball with ``<h_k, u> >= 0`` for all k is optimal and the one closest to ``mu`` is
  returned, the projection of ``mu`` onto the dual cone (0 for strongly stationary tasks).

  Args:
    gram: Gram matrix of the task-weighted gradients, (K, K).
    rho: conflict radius, >= 0.

  Returns:
    Coefficients ``a`` (K,) in float32 or wider.

  Example:
    >>> m = jnp.array([[1.0, 0.0], [0.0, 4.0]])
    >>> rectify(m, 0.0)
    Array([0.5, 0.5], dtype=float32)
  """
  hyperparams.check_scalar("rho", rho, lower=0.0)
  return conflict_averse_direction(gram, rho)


def inject_energy(gram: Array, coeffs: Array,
                  kappa: jax.typing.ArrayLike) -> Array:
  """S2, magnitude-enhanced energy injection: coefficients of ``u_en``.

  ``u_en = s u`` with ``s = kappa ||g_joint|| / ||u||``, ``u = sum_k a_k h_k``
  (``a = coeffs``): the direction of ``u`` with the joint gradient's magnitude
  times kappa. ``s = 0`` where ``u`` vanishes.

  Args:
    gram: Gram matrix, (K, K).
    coeffs: coefficients ``a`` of the direction ``u``, (K,).
    kappa: magnitude gain, > 0.

  Returns:
    ``s * coeffs``, (K,).

  Example:
    >>> m = jnp.eye(2)
    >>> inject_energy(m, jnp.array([1.0, 0.0]), 1.0)  # ||g_joint|| = sqrt(2)
    Array([1.4142135, 0.       ], dtype=float32)
  """
  hyperparams.check_scalar("kappa", kappa, lower=0.0, lower_open=True)
  gram = check_gram(gram)
  coeffs = jnp.asarray(coeffs, gram.dtype)
  s = safe_divide(jnp.asarray(kappa, gram.dtype) * joint_norm(gram), norm_of(gram, coeffs))
  return s * coeffs


def fuse(coeffs: Array, nu: jax.typing.ArrayLike) -> Array:
  """S3, adaptive gradient fusion: ``g_final = (1 - nu) u_en + nu g_joint``.

  In coefficients: ``c = (1 - nu) coeffs + nu 1``.

  Args:
    coeffs: coefficients of ``u_en``, (K,).
    nu: fusion coefficient in [0, 1]; 1 gives linear scalarization.

  Example:
    >>> fuse(jnp.array([2.0, 0.0]), 0.5)
    Array([1.5, 0.5], dtype=float32)
  """
  hyperparams.check_scalar("nu", nu, lower=0.0, upper=1.0)
  coeffs = jnp.asarray(coeffs)
  nu = jnp.asarray(nu, coeffs.dtype)
  return (1.0 - nu) * coeffs + nu * jnp.ones_like(coeffs)


def came(rho: jax.typing.ArrayLike = 0.5, kappa: jax.typing.ArrayLike = 1.5,
         nu: jax.typing.ArrayLike = 0.2) -> Weighting:
  """CAME-Grad's weighting: ``c = fuse(inject_energy(rectify(M, rho), kappa), nu)``.

  ``g_final = sum_k c_k h_k`` with ``c = (1 - nu) s a + nu 1``,
  ``a = 1/K + lambda alpha*`` (S1) and ``s = kappa ||g_joint|| / ||u_rect||`` (S2).

  Args:
    rho: conflict radius of S1 (>= 0); paper's default 0.5.
    kappa: magnitude gain of S2 (> 0); paper's default 1.5.
    nu: fusion coefficient of S3 in [0, 1]; paper's default 0.2.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Example:
    >>> weighting = came(rho=0.5, kappa=1.5, nu=0.2)
    >>> c = weighting(jnp.array([[1.0, -0.2], [-0.2, 1.0]]))
  """
  hyperparams.check_scalar("rho", rho, lower=0.0)
  hyperparams.check_scalar("kappa", kappa, lower=0.0, lower_open=True)
  hyperparams.check_scalar("nu", nu, lower=0.0, upper=1.0)

  def weighting(gram: Array) -> Array:
    return fuse(inject_energy(gram, rectify(gram, rho), kappa), nu)

  return scale_covariant(weighting)
