"""CAME-Grad ablations: which of the stages S1 (rectify), S2 (inject energy), S3 (fuse) run.

Each ablation composes the stage functions :func:`~came_grad_jax.weightings.rectify`,
:func:`~came_grad_jax.weightings.inject_energy` and :func:`~came_grad_jax.weightings.fuse`:

* :func:`came_s1`: ``u_rect`` (CAGrad's direction with radius rho, without its rescale);
* :func:`came_s1_s2`: ``u_en = kappa ||g_joint|| u_rect / ||u_rect||``;
* :func:`came_s1_s3`: ``(1 - nu) u_rect + nu g_joint``;
* :func:`came_stages`: any subset (S1 always runs; ``kappa`` / ``nu`` of None skip S2 / S3);
  with both set it is the full method, :func:`~came_grad_jax.weightings.came`.
"""

from __future__ import annotations

import jax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax.weightings._base import Weighting, scale_covariant
from came_grad_jax.weightings._came import fuse, inject_energy, rectify

Array = jax.Array


def came_stages(rho: float = 0.5, kappa: float | None = None,
                nu: float | None = None) -> Weighting:
  """S1, then S2 if ``kappa`` is given, then S3 if ``nu`` is given.

  ``c = fuse(inject_energy(rectify(M, rho), kappa), nu)`` with the skipped
  stages left out.

  Args:
    rho: conflict radius of S1, >= 0.
    kappa: magnitude gain of S2 (> 0), or None to skip S2.
    nu: fusion coefficient of S3 in [0, 1], or None to skip S3.

  Returns:
    A function ``gram (K, K) -> coefficients (K,)``.

  Example:
    >>> came_stages(0.5, kappa=1.5)(jax.numpy.eye(2))  # S1 + S2
    Array([1.5, 1.5], dtype=float32)
  """
  hyperparams.check_scalar("rho", rho, lower=0.0)
  if kappa is not None:
    hyperparams.check_scalar("kappa", kappa, lower=0.0, lower_open=True)
  if nu is not None:
    hyperparams.check_scalar("nu", nu, lower=0.0, upper=1.0)

  def weighting(gram: Array) -> Array:
    coeffs = rectify(gram, rho)
    if kappa is not None:
      coeffs = inject_energy(gram, coeffs, kappa)
    if nu is not None:
      coeffs = fuse(coeffs, nu)
    return coeffs

  return scale_covariant(weighting)


def came_s1(rho: float = 0.5) -> Weighting:
  """S1 only: ``c = a``, the coefficients of ``u_rect`` (:func:`rectify`)."""
  return came_stages(rho)


def came_s1_s2(rho: float = 0.5, kappa: float = 1.5) -> Weighting:
  """S1 + S2: ``u_en = kappa (||g_joint|| / ||u_rect||) u_rect``, no fusion."""
  return came_stages(rho, kappa=kappa)


def came_s1_s3(rho: float = 0.5, nu: float = 0.2) -> Weighting:
  """S1 + S3: ``(1 - nu) u_rect + nu g_joint``, no energy injection."""
  return came_stages(rho, nu=nu)
