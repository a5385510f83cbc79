"""Shared helpers for the tests of the baseline weightings (issue 3).

The float64 references themselves are written in each test module, from the
papers' equations, on the task-gradient vectors (not on the Gram matrix).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from came_grad_jax import weightings
from tests import reference

#: The core's named cases (tests/reference.py), and all-zero gradients.
CASES = ("random", "nearly_parallel", "opposed", "one_zero", "badly_scaled", "all_zero")
EDGE_CASES = ("opposed", "one_zero", "badly_scaled", "all_zero")


def gradients(case: str, num_tasks: int, dim: int = 40, seed: int = 0) -> np.ndarray:
  """(K, P) float64 task gradients of a named case."""
  if case == "all_zero":
    return np.zeros((num_tasks, dim))
  return reference.task_gradients(case, num_tasks, dim, seed)


def coefficients(weighting: weightings.AnyWeighting, h: np.ndarray, dtype=jnp.float64,
                 *, wrap=lambda f: f) -> np.ndarray:
  """A weighting's coefficients for the gradients ``h`` from a fresh state (x64 enabled).

  ``wrap`` may jit the weighting (e.g. ``chex.variants``' ``self.variant``).
  """
  stateful = weightings.as_stateful(weighting)
  with jax.enable_x64(True):
    gram = jnp.asarray(h @ h.T, dtype)
    coeffs, _ = wrap(stateful.apply)(gram, stateful.init(h.shape[0]))
    return np.asarray(coeffs, np.float64)


def update_error(h: np.ndarray, coeffs: np.ndarray, coeffs_ref: np.ndarray) -> float:
  """``||H^T (c - c_ref)|| / sum_k |c_ref_k| ||h_k||``: the update's error relative to its terms.

  The denominator is the size of the terms the reference update is summed
  from (the rounding-error scale of any computation of it); 0 / 0 reads 0.
  """
  scale = np.abs(coeffs_ref) @ np.linalg.norm(h, axis=1)
  diff = np.linalg.norm(h.T @ (np.asarray(coeffs) - coeffs_ref))
  return 0.0 if diff == 0 else diff / max(scale, np.finfo(float).tiny)


def worst_conflict(h: np.ndarray, coeffs: np.ndarray) -> float:
  """``max_k -<h_k, d> / (||h_k|| sum_j |c_j| ||h_j||)``: > 0 where the update conflicts with a task."""
  norms = np.linalg.norm(h, axis=1)
  scale = norms * (np.abs(coeffs) @ norms)
  inner = h @ (h.T @ coeffs)
  return float(np.max(np.where(scale > 0, -inner / np.where(scale > 0, scale, 1.0), 0.0)))


def assert_finite_on_edge_cases(weighting: weightings.AnyWeighting, ks=(2, 3)) -> None:
  """Finite coefficients on zero, opposed and badly scaled gradients, float32 and float64, jitted."""
  for dtype in (jnp.float32, jnp.float64):
    for k in ks:
      for case in EDGE_CASES:
        c = coefficients(weighting, gradients(case, k), dtype, wrap=jax.jit)
        assert np.all(np.isfinite(c)), (dtype, k, case, c)
