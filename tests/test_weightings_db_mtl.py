"""DB-MTL: max-norm balancing and its tracked transformation against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import came_grad_jax as cg
from came_grad_jax import weightings
from tests import mtl_checks

BALANCE = mtl_checks.jitted(weightings.max_norm_balancing())


def balancing_reference(h: np.ndarray) -> np.ndarray:
  """Lin et al. 2023, Eq. (6): ``d = max_j ||h_j|| sum_k h_k / ||h_k||`` as coefficients."""
  norms = np.linalg.norm(h, axis=1)
  return np.where(norms > 0, norms.max() / np.where(norms > 0, norms, 1.0), 0.0)


def test_matches_float64_reference(x64):
  mtl_checks.assert_all_below(mtl_checks.reference_errors(BALANCE, balancing_reference), 1e-13)


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_db_mtl_tracks_log_loss_gradients(x64, sigma):
  """Three steps of the transformation against the paper's Algorithm 1 (beta fixed, or
  decaying as ``beta / t^sigma`` like LibMTL's DB_beta_sigma)."""
  rng = np.random.default_rng(0)
  weights = np.array([1.0, 3.0])
  tx = cg.db_mtl(beta=0.8, task_weights=weights, beta_sigma=sigma)
  state = tx.init({"w": jnp.zeros(4)})
  y = None
  for t in range(1, 4):
    g = rng.normal(size=(2, 4)) * np.exp(rng.normal(size=(2, 1)))
    past = 0.8 / t**sigma
    y = g if y is None else past * y + (1.0 - past) * g
    h = y * weights[:, None]
    norms = np.linalg.norm(h, axis=1)
    want = norms.max() * (h / norms[:, None]).sum(0)
    d, state = jax.jit(tx.update)({"w": jnp.asarray(g)}, state)
    assert np.linalg.norm(np.asarray(d["w"]) - want) <= 1e-12 * np.linalg.norm(want)


def test_needs_the_number_of_tasks():
  with pytest.raises(ValueError, match="num_tasks"):
    cg.db_mtl()
  with pytest.raises(ValueError, match="beta"):
    cg.db_mtl(beta=1.0, num_tasks=2)


def test_finite_in_float32():
  mtl_checks.assert_finite_in_float32(BALANCE)


def test_beta_sigma_decays_the_tracking_weight_as_libmtl(x64):
  """``y <- g + (beta / t^sigma) (y - g)`` at step t >= 2 (LibMTL's DB_beta_sigma)."""
  rng = np.random.default_rng(1)
  beta, sigma = 0.9, 0.5
  tx = cg.track_gradients(beta, 2, beta_sigma=sigma)
  state = tx.init({"w": jnp.zeros(3)})
  y = None
  for t in range(1, 5):
    g = rng.normal(size=(2, 3))
    y = g if y is None else g + beta / t**sigma * (y - g)
    out, state = jax.jit(tx.update)({"w": jnp.asarray(g)}, state)
    assert np.linalg.norm(np.asarray(out["w"]) - y) <= 1e-12 * np.linalg.norm(y)
  # a non-finite step neither enters the state nor counts as a step
  bad, kept = tx.update({"w": jnp.full((2, 3), jnp.nan)}, state)
  assert np.isnan(np.asarray(bad["w"])).all() and int(kept.count) == int(state.count)
  # the registry's default keeps the constant weight
  assert cg.get_method("db_mtl").hyperparameters["beta_sigma"] == 0.0
  with pytest.raises(ValueError, match="beta_sigma"):
    cg.db_mtl(num_tasks=2, beta_sigma=-1.0)
