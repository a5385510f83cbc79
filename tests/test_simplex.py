"""Projection onto the simplex and the restarted-FISTA minimiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import _numerics as numerics
from came_grad_jax import _simplex as simplex


def test_projection_onto_simplex():
  rng = np.random.default_rng(0)
  for _ in range(20):
    v = rng.normal(size=6) * 3
    x = np.asarray(simplex.project_simplex(jnp.asarray(v)))
    assert np.all(x >= 0) and abs(x.sum() - 1) < 1e-6
    # Optimality: <v - x, y - x> <= 0 for every vertex y of the simplex.
    assert np.max(v - x) <= (v - x) @ x + 1e-5


@pytest.mark.parametrize("seed", range(3))
def test_minimize_on_simplex_finds_the_projection(x64, seed):
  """min ||x - v||^2 over the simplex is the projection of v: two independent routes."""
  v = jnp.asarray(np.random.default_rng(seed).normal(size=7) * 2)
  value_and_grad = lambda x: (jnp.sum((x - v) ** 2), 2 * (x - v))
  x = jax.jit(lambda: simplex.minimize_on_simplex(
      value_and_grad, jnp.full((7,), 1 / 7), lipschitz0=1.0, gap_tol=1e-12, max_iter=2000))()
  np.testing.assert_allclose(x, simplex.project_simplex(v), atol=1e-6)
  _, grad = value_and_grad(x)
  assert float(simplex.frank_wolfe_gap(x, grad)) <= 1e-9


@pytest.mark.parametrize("k", [3, numerics.SMALL_K, numerics.SMALL_K + 5])
def test_task_sum_and_min_over_columns(k):
  x = np.random.default_rng(k).normal(size=(k, 4))
  np.testing.assert_allclose(numerics.task_sum(jnp.asarray(x)), x.sum(0), rtol=1e-6)
  np.testing.assert_array_equal(numerics.task_min(jnp.asarray(x)), x.min(0).astype(np.float32))
  x[1, 2] = np.nan
  assert np.isnan(numerics.task_min(jnp.asarray(x))[2])
  assert np.isnan(numerics.task_sum(jnp.asarray(x))[2])
