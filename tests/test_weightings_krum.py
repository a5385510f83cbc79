"""Krum, Multi-Krum and TrimmedMean against float64 NumPy references on the vectors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import came_grad_jax as cg
from came_grad_jax import weightings
from tests import mtl_checks


def krum_reference(h: np.ndarray, f: int, m: int) -> np.ndarray:
  """Blanchard et al. 2017: score = sum of distances to the K - f - 2 nearest others."""
  k = len(h)
  dist = np.linalg.norm(h[:, None] - h[None], axis=2)
  scores = [np.sort(np.delete(dist[i], i))[:k - f - 2].sum() for i in range(k)]
  c = np.zeros(k)
  c[np.argsort(scores, kind="stable")[:m]] = 1.0 / m
  return c


@pytest.mark.parametrize("f,m", [(0, 1), (1, 1), (1, 3), (3, 2)])
def test_krum_matches_float64_reference(x64, f, m):
  weighting = mtl_checks.jitted(weightings.krum(f, m))
  rng = np.random.default_rng(f + 10 * m)
  for _ in range(10):
    h = rng.normal(size=(7, 5))
    h[rng.integers(7)] *= 30.0  # one outlier
    np.testing.assert_array_equal(mtl_checks.coefficients(weighting, h), krum_reference(h, f, m))


def test_krum_needs_enough_tasks():
  with pytest.raises(ValueError, match="K >= 4"):
    weightings.krum(n_byzantine=1)(jnp.eye(3))
  with pytest.raises(ValueError, match="n_selected"):
    weightings.krum(n_selected=0)


def trimmed_reference(g: np.ndarray, t: int, w: np.ndarray) -> np.ndarray:
  h = g * w[:, None]
  return np.sort(h, axis=0)[t:len(h) - t].mean(0)


@pytest.mark.parametrize("t", [0, 1, 2])
def test_trimmed_mean_matches_float64_reference(x64, t):
  rng = np.random.default_rng(t)
  w = np.array([1.0, 2.0, 0.5, 1.0, 3.0])
  tx = cg.trimmed_mean(t, w)
  g = {"a": jnp.asarray(rng.normal(size=(5, 3, 2))), "b": jnp.asarray(rng.normal(size=(5, 4)))}
  out, _ = jax.jit(tx.update)(g, tx.init(None))
  for name in g:
    want = trimmed_reference(np.asarray(g[name]).reshape(5, -1), t, w)
    np.testing.assert_allclose(np.asarray(out[name]).ravel(), want, rtol=1e-14, atol=0)


def test_trimmed_mean_propagates_nan_and_checks_k():
  tx = cg.trimmed_mean(1)
  out, _ = tx.update(jnp.array([[np.nan, 1.0], [0.0, 2.0], [5.0, 3.0]]), tx.init(None))
  assert np.isnan(out[0]) and out[1] == 2.0
  with pytest.raises(ValueError, match="K >= 3"):
    tx.update(jnp.ones((2, 2)), tx.init(None))
  with pytest.raises(ValueError, match="K >= 5"):
    cg.trimmed_mean(2, num_tasks=4)
