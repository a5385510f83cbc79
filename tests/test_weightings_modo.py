"""MoDo and MoCo: the projected weight steps (and MoCo's tracking) against float64 NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import came_grad_jax as cg
from came_grad_jax import weightings
from tests import mtl_checks


def project_simplex(v: np.ndarray) -> np.ndarray:
  """Euclidean projection onto the simplex by bisection on the threshold (independent of the sort rule)."""
  lo, hi = v.min() - 1.0, v.max()
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > 1 else (lo, mid)
  return np.maximum(v - 0.5 * (lo + hi), 0)


def weight_step(lam, h, gamma, rho):
  """Chen et al. 2024, Alg. 1 with one batch: ``lambda <- Pi(lambda - gamma (H H^T + rho I) lambda)``."""
  return project_simplex(lam - gamma * (h @ h.T @ lam + rho * lam))


def modo_reference(hs, gamma, rho):
  lam, out = np.full(hs[0].shape[0], 1.0 / hs[0].shape[0]), []
  for h in hs:
    lam = weight_step(lam, h, gamma, rho)
    out.append(lam @ h)
  return out


def test_modo_matches_float64_reference(x64):
  rng = np.random.default_rng(0)
  hs = [rng.normal(size=(3, 6)) for _ in range(4)]
  w = mtl_checks.jitted(weightings.modo(gamma=0.05, rho=0.1))
  state = w.init(3)
  for h, want in zip(hs, modo_reference(hs, 0.05, 0.1)):
    c, state = w.apply(jnp.asarray(h @ h.T), state)
    assert np.linalg.norm(np.asarray(c) @ h - want) <= 1e-12 * np.linalg.norm(want)


@pytest.mark.slow
def test_modo_transformation_keeps_weights_on_the_simplex(x64):
  tx = cg.modo(gamma=0.5, rho=0.0, num_tasks=2)
  state = tx.init(jnp.zeros(2))
  g = jnp.array([[1.0, 0.0], [-0.5, 3.0]])
  for _ in range(3):
    _, state = tx.update(g, state)
    lam = np.asarray(state.weighting_state.weights)
    assert abs(lam.sum() - 1) <= 1e-12 and np.all(lam >= 0)


def moco_reference(gs, beta, gamma, rho, task_weights):
  """Fernando et al. 2023, Alg. 1 (constant steps): MoDo's step on the tracked gradients."""
  tracked, y = [], None
  for g in gs:
    y = g.copy() if y is None else beta * y + (1 - beta) * g
    tracked.append(y * task_weights[:, None])
  return modo_reference(tracked, gamma, rho)


def test_moco_matches_float64_reference(x64):
  rng = np.random.default_rng(1)
  gs = [rng.normal(size=(3, 5)) for _ in range(4)]
  weights = np.array([1.0, 2.0, 0.5])
  tx = cg.moco(beta=0.5, gamma=0.1, rho=0.2, task_weights=weights)
  state = tx.init(jnp.zeros(5))
  step = jax.jit(tx.update)
  for g, want in zip(gs, moco_reference(gs, 0.5, 0.1, 0.2, weights)):
    d, state = step(jnp.asarray(g), state)
    assert np.linalg.norm(np.asarray(d) - want) <= 1e-12 * np.linalg.norm(want)


def test_moco_state_survives_non_finite_gradients(x64):
  tx = cg.moco(num_tasks=2)
  state = tx.init(jnp.zeros(2))
  _, state = tx.update(jnp.array([[1.0, 0.0], [0.0, 1.0]]), state)
  d, new = tx.update(jnp.array([[np.nan, 0.0], [0.0, 1.0]]), state)
  assert np.all(np.isnan(np.asarray(d)))
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


def test_need_the_number_of_tasks():
  with pytest.raises(ValueError, match="num_tasks"):
    cg.moco()
  with pytest.raises(ValueError, match="num_tasks"):
    weightings.modo().init(None)
  with pytest.raises(ValueError, match="gamma"):
    weightings.modo(gamma=0.0)


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(mtl_checks.jitted(weightings.modo()))
