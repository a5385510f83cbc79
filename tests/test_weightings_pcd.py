"""PCD: the priority QP against an enumeration of active sets on the vectors (float64)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

import came_grad_jax as cg
from came_grad_jax import weightings
from tests import mtl_checks


def pcd_qp(g: np.ndarray, tau: float) -> np.ndarray | None:
  """min 1/2 ||d - g_1||^2 s.t. <g_j, d> >= tau ||g_j||^2: the KKT point among all active sets
  (unique: the problem is strictly convex), or None when infeasible."""
  secondary = range(1, len(g))
  for size in range(len(g)):
    for active in itertools.combinations(secondary, size):
      a = list(active)
      if a:
        gs = g[a]
        mu = np.linalg.lstsq(gs @ gs.T, tau * np.sum(gs**2, 1) - gs @ g[0], rcond=None)[0]
        if np.any(mu < -1e-12):
          continue
        d = g[0] + mu @ gs
      else:
        d = g[0].copy()
      if all(g[j] @ d >= tau * g[j] @ g[j] - 1e-10 * np.linalg.norm(g[j]) ** 2 for j in secondary):
        return d
  return None


def pcd_reference(hs, tau, beta, eps):
  """Varam et al. 2026 with TorchJD's normalisation: EMA of squared norms, bias-corrected."""
  v, out = np.zeros(len(hs[0])), []
  for t, h in enumerate(hs, start=1):
    sq = np.sum(h**2, 1)
    v = beta * v + (1 - beta) * sq
    s = 1 / np.sqrt(v / (1 - beta**t) + eps)
    d = pcd_qp(h * s[:, None], tau)
    d = h[0] if d is None else d
    out.append(d * np.sqrt(sq[0]) / np.linalg.norm(d))
  return out


@pytest.mark.parametrize("tau,beta", [(0.02, 0.999), (0.3, 0.5), (0.0, 0.0)])
def test_matches_float64_reference(x64, tau, beta):
  rng = np.random.default_rng(int(tau * 100))
  hs = [rng.normal(size=(4, 6)) * np.exp(2 * rng.normal(size=(4, 1))) for _ in range(4)]
  w = mtl_checks.jitted(weightings.pcd(tau, beta, 1e-8))
  state = w.init(4)
  for h, want in zip(hs, pcd_reference(hs, tau, beta, 1e-8)):
    c, state = w.apply(jnp.asarray(h @ h.T), state)
    assert np.linalg.norm(np.asarray(c) @ h - want) <= 1e-10 * np.linalg.norm(want)


def test_secondary_tasks_keep_their_share(x64):
  w = mtl_checks.jitted(weightings.pcd(0.1, 0.0, 0.0))
  for seed in range(10):
    h = mtl_checks.random_gradients(seed)
    if h.shape[1] < 4:
      continue
    c, _ = w.apply(jnp.asarray(h @ h.T), w.init(4))
    d = np.asarray(c) @ h
    units = h / np.linalg.norm(h, axis=1, keepdims=True)
    # <u_j, d~> >= tau ||u_j||^2 with d~ = d ||d~|| / ||h_1||: check the cosine form.
    d_unit = d / np.linalg.norm(d)
    assert np.all(units[1:] @ d_unit >= 0.0)
    assert np.isclose(np.linalg.norm(d), np.linalg.norm(h[0]), rtol=1e-12)


@pytest.mark.slow
def test_infeasible_constraints_give_the_primary_gradient(x64):
  h = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # secondaries anti-parallel
  c = mtl_checks.coefficients(weightings.pcd(0.5, 0.0, 0.0), h)
  np.testing.assert_allclose(c, [1.0, 0.0, 0.0], atol=1e-15)
  assert np.all(mtl_checks.coefficients(weightings.pcd(), np.zeros((3, 4))) == 0)


def test_errors():
  with pytest.raises(ValueError, match="tau"):
    weightings.pcd(tau=1.5)
  with pytest.raises(ValueError, match="num_tasks"):
    cg.pcd()


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(mtl_checks.jitted(weightings.pcd()))
