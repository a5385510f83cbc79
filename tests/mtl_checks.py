"""Shared helpers for the tests of the baseline weightings (issue 3).

The float64 references themselves are written in each test module, from the
papers' equations, on the task-gradient vectors (not on the Gram matrix).
Weightings are jitted once per module (:func:`jitted`) and reused, so that each
task count compiles once.
"""

from __future__ import annotations

from collections.abc import Callable

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


def jitted(weighting: weightings.AnyWeighting) -> weightings.StatefulWeighting:
  """The weighting in stateful form with a jitted ``apply`` (compiled once per shape and dtype)."""
  stateful = weightings.as_stateful(weighting)
  return weightings.StatefulWeighting(stateful.init, jax.jit(stateful.apply))


def coefficients(weighting: weightings.AnyWeighting, h: np.ndarray,
                 dtype=jnp.float64) -> np.ndarray:
  """The coefficients for the gradients ``h`` (K, P) from a fresh state, x64 enabled."""
  stateful = weightings.as_stateful(weighting)
  with jax.enable_x64(True):
    gram = jnp.asarray(h @ h.T, dtype)
    coeffs, _ = stateful.apply(gram, stateful.init(h.shape[0]))
    return np.asarray(coeffs, np.float64)


def update_error(h: np.ndarray, coeffs: np.ndarray, coeffs_ref: np.ndarray) -> float:
  """``||H^T (c - c_ref)||`` relative to the size of the reference update's terms.

  The denominator is ``sum_k |c_ref_k| ||h_k||``, the rounding-error scale of
  any computation of the update, floored at 1e-6 of the smallest non-zero
  ``||h_k||`` (for a reference update that is zero by cancellation); 0 / 0
  reads 0.
  """
  norms = np.linalg.norm(h, axis=1)
  if not np.any(norms > 0):
    return 0.0
  scale = max(np.abs(coeffs_ref) @ norms, 1e-6 * norms[norms > 0].min())
  return float(np.linalg.norm(h.T @ (np.asarray(coeffs) - coeffs_ref)) / scale)


def reference_errors(weighting: weightings.AnyWeighting,
                     reference_fn: Callable[[np.ndarray], np.ndarray],
                     ks=(2, 4), cases=CASES) -> dict:
  """``{(k, case): update_error}`` of the weighting against ``reference_fn(h) -> c_ref``, float64."""
  return {(k, case): update_error(h, coefficients(weighting, h), reference_fn(h))
          for k in ks for case in cases for h in [gradients(case, k)]}


def assert_matches_reference(weighting: weightings.AnyWeighting,
                             reference_fn: Callable[[np.ndarray], np.ndarray], tol: float,
                             case: str = "random", k: int = 4) -> None:
  """The weighting's update is within ``tol`` (:func:`update_error`) of the reference's."""
  h = gradients(case, k)
  err = update_error(h, coefficients(weighting, h), reference_fn(h))
  assert err <= tol, err


def unit_rows(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(live, norms, u)``: the indices of the non-zero gradients, all norms, and the live unit rows."""
  norms = np.linalg.norm(h, axis=1)
  live = np.flatnonzero(norms > 0)
  return live, norms, h[live] / norms[live, None]


def assert_all_below(errors: dict, tol: float) -> None:
  bad = {key: err for key, err in errors.items() if not err <= tol}
  assert not bad, f"errors above {tol}: {bad}"


def worst_conflict(h: np.ndarray, coeffs: np.ndarray) -> float:
  """``max_k -<h_k, d> / (||h_k|| sum_j |c_j| ||h_j||)``: > 0 where the update conflicts with a task."""
  norms = np.linalg.norm(h, axis=1)
  scale = norms * (np.abs(coeffs) @ norms)
  inner = h @ (h.T @ coeffs)
  return float(np.max(np.where(scale > 0, -inner / np.where(scale > 0, scale, 1.0), 0.0)))


def random_gradients(seed: int, num_tasks: int = 4) -> np.ndarray:
  """(K, P) gradients with random dimension P in [2, 8) and scales spread over e^{+-3}."""
  rng = np.random.default_rng(seed)
  dim = int(rng.integers(2, 8))
  return rng.normal(size=(num_tasks, dim)) * np.exp(rng.normal(size=(num_tasks, 1)))


def assert_finite_in_float32(weighting: weightings.AnyWeighting, k: int = 4) -> None:
  """Finite coefficients on zero, opposed and badly scaled gradients in float32."""
  for case in EDGE_CASES:
    c = coefficients(weighting, gradients(case, k), jnp.float32)
    assert np.all(np.isfinite(c)), (case, c)


def assert_close_to_norm(got, want, rtol: float) -> None:
  """Leaf by leaf, ``||got - want|| <= rtol * ||want||``: how float32 results are compared.

  Relative to the norm of each leaf, not element by element: an element much
  smaller than its leaf may differ by more than ``rtol`` of itself on another
  CPU's rounding, and that is not an error.
  """
  got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
  assert len(got_leaves) == len(want_leaves)
  for g, w in zip(got_leaves, want_leaves):
    g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
    assert g.shape == w.shape, (g.shape, w.shape)
    err, scale = np.linalg.norm(g - w), np.linalg.norm(w)
    assert err <= rtol * scale or (scale == 0 and err == 0), (err, scale)
