"""The "Double Dilemma" made visible: per-step diagnostics from ``M`` and ``c``.

All quantities are read off the Gram matrix ``M`` of the task-weighted
gradients and the coefficients ``c`` of the update ``g_final = sum_k c_k h_k``;
no pass over the gradients is needed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax._numerics import gram_exponent, safe_divide

Array = jax.Array


class Diagnostics(NamedTuple):
  """One step's diagnostics of a Gram-based multi-task update."""

  cosine: Array | None
  """(K, K) pairwise cosine similarities of the task gradients (0 for a zero gradient)."""
  task_norms: Array | None
  """(K,) norms ``||h_k||`` of the task-weighted gradients."""
  drift_deg: Array
  """Angle in degrees between ``g_final`` and ``g_joint`` (0 if either is zero)."""
  diffusion_decay: Array
  """``||g_joint|| / sum_k ||h_k||``: 1 = no cancellation, 0 = full (1 if all zero)."""
  energy_gain: Array
  """``||g_final|| / ||g_joint||`` (kappa for CAME-Grad with nu = 0; 0 if g_joint = 0)."""
  coefficients: Array | None
  """(K,) the coefficients ``c`` of the update."""
  min_inner: Array
  """``min_k <h_k, g_final>``: negative means the update conflicts with a task."""


def _angle_deg(gram: Array, a: Array, a_norm: Array, b: Array, b_norm: Array) -> Array:
  """Angle in degrees between ``sum_k a_k h_k`` and ``sum_k b_k h_k`` (0 if either is 0).

  ``2 atan2(||a^ - b^||, ||a^ + b^||)`` on the unit vectors, each norm read off
  ``M`` from the coefficient difference, accurate at small angles where
  ``arccos`` of the cosine is not.
  """
  both = (a_norm > 0) & (b_norm > 0)
  diff = a / jnp.where(both, a_norm, 1.0) - b / jnp.where(both, b_norm, 1.0)
  summ = a / jnp.where(both, a_norm, 1.0) + b / jnp.where(both, b_norm, 1.0)
  sq = lambda c: jnp.sqrt(jnp.maximum(c @ gram @ c, 0.0))
  return jnp.where(both, jnp.degrees(2.0 * jnp.arctan2(sq(diff), sq(summ))), 0.0)


def compute_diagnostics(gram: Array, coeffs: Array) -> Diagnostics:
  """Diagnostics of the update ``sum_k c_k h_k`` from ``M`` (K, K) and ``c`` (K,).

  Example:
    >>> d = compute_diagnostics(jnp.array([[1.0, -1.0], [-1.0, 4.0]]), jnp.ones(2))
    >>> float(d.diffusion_decay)  # ||h1 + h2|| / (||h1|| + ||h2||) = sqrt(3) / 3
    0.5773...
  """
  gram = jnp.asarray(gram)
  coeffs = jnp.asarray(coeffs, gram.dtype)
  # Read off M / 2^E (exact; E even): no sum of Gram entries near 1e38 overflows.
  e = gram_exponent(gram)
  gram = jnp.ldexp(gram, -e)
  ones = jnp.ones_like(coeffs)
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
  cosine = safe_divide(gram, jnp.outer(norms, norms), 0.0)
  joint_norm = jnp.sqrt(jnp.maximum(ones @ gram @ ones, 0.0))
  big = jnp.max(jnp.abs(coeffs))  # coefficients may be ~1e20 (FairGrad at tiny scales)
  unit = coeffs / jnp.where(big > 0, big, 1.0)
  final_norm = big * jnp.sqrt(jnp.maximum(unit @ gram @ unit, 0.0))
  inner = gram @ coeffs
  return Diagnostics(
      cosine=cosine,
      task_norms=jnp.ldexp(norms, e // 2),
      drift_deg=_angle_deg(gram, coeffs, final_norm, ones, joint_norm),
      diffusion_decay=safe_divide(joint_norm, jnp.sum(norms), 1.0),
      energy_gain=safe_divide(final_norm, joint_norm, 0.0),
      coefficients=coeffs,
      min_inner=jnp.ldexp(jnp.min(inner), e),
  )


def empty_diagnostics(num_tasks: int | None, dtype=jnp.float32) -> Diagnostics:
  """Zero diagnostics for a transformation's initial state, every field its own buffer.

  With ``num_tasks=None`` (K unknown until the first update) the K-shaped
  fields (``cosine``, ``task_norms``, ``coefficients``) are None: the state
  keeps the scalar diagnostics only. Separate buffers let the state be donated.
  """
  zero = lambda: jnp.zeros([], dtype)
  if num_tasks is None:
    cosine = task_norms = coefficients = None
  else:
    cosine = jnp.zeros((num_tasks, num_tasks), dtype)
    task_norms = jnp.zeros((num_tasks,), dtype)
    coefficients = jnp.zeros((num_tasks,), dtype)
  return Diagnostics(cosine=cosine, task_norms=task_norms, drift_deg=zero(),
                     diffusion_decay=zero(), energy_gain=zero(), coefficients=coefficients,
                     min_inner=zero())


def keep_like(new: Diagnostics, template: Diagnostics, dtype) -> Diagnostics:
  """``new`` cast to ``dtype``, with the fields that are None in ``template`` dropped."""
  return Diagnostics._make(None if old is None else jnp.asarray(value).astype(dtype)
                           for value, old in zip(new, template))
