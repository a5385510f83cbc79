"""Diagnostics read off the Gram matrix, against NumPy on the vectors themselves."""

import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import compute_diagnostics


def test_matches_vector_computation(x64):
  rng = np.random.default_rng(0)
  h = rng.normal(size=(4, 10))
  c = rng.uniform(0.5, 2.0, size=4)
  d = compute_diagnostics(jnp.asarray(h @ h.T), jnp.asarray(c))
  g_final, g_joint = c @ h, h.sum(0)
  norms = np.linalg.norm(h, axis=1)
  np.testing.assert_allclose(d.task_norms, norms, rtol=1e-12)
  np.testing.assert_allclose(d.cosine, (h @ h.T) / np.outer(norms, norms), rtol=1e-12)
  cos = g_final @ g_joint / np.linalg.norm(g_final) / np.linalg.norm(g_joint)
  np.testing.assert_allclose(d.drift_deg, np.degrees(np.arccos(cos)), rtol=1e-9)
  np.testing.assert_allclose(d.diffusion_decay, np.linalg.norm(g_joint) / norms.sum(), rtol=1e-12)
  np.testing.assert_allclose(d.energy_gain, np.linalg.norm(g_final) / np.linalg.norm(g_joint), rtol=1e-12)
  np.testing.assert_allclose(d.min_inner, np.min(h @ g_final), rtol=1e-12)
  np.testing.assert_allclose(d.coefficients, c)


@pytest.mark.parametrize("gram", [np.zeros((3, 3)), np.array([[1.0, -1.0], [-1.0, 1.0]])])
def test_zero_and_opposed_are_finite(gram):
  d = compute_diagnostics(jnp.asarray(gram, jnp.float32), jnp.ones(gram.shape[0]))
  for leaf in d:
    assert np.all(np.isfinite(leaf))
  if gram.shape[0] == 2:
    assert float(d.diffusion_decay) == pytest.approx(0.0, abs=1e-6)  # full cancellation


@pytest.mark.slow
def test_drift_is_exactly_zero_for_linear_scalarization_and_accurate_when_small(x64):
  rng = np.random.default_rng(1)
  h = rng.normal(size=(3, 50))
  gram = jnp.asarray(h @ h.T, jnp.float32)
  assert float(compute_diagnostics(gram, jnp.ones(3)).drift_deg) == 0.0
  c = np.array([1.0, 1.0, 1.0 + 1e-4])
  g_final, g_joint = c @ h, h.sum(0)
  u, v = g_final / np.linalg.norm(g_final), g_joint / np.linalg.norm(g_joint)
  want = np.degrees(2 * np.arctan2(np.linalg.norm(u - v), np.linalg.norm(u + v)))
  got = float(compute_diagnostics(jnp.asarray(h @ h.T), jnp.asarray(c)).drift_deg)
  np.testing.assert_allclose(got, want, rtol=1e-6)
