"""S1 rectification and CAGrad at (weakly) Pareto-stationary points, against a primal SOCP.

``u* = argmax_u min_k <h_k, u>`` s.t. ``||u - mu|| <= rho ||mu||``. At a Pareto-stationary
point the dual's min-norm combination ``h_alpha*`` vanishes and the optimum value is 0; every
point of the ball with ``H u >= 0`` is optimal, and the library returns the one closest to
``mu``. The reference is the primal solved here in float64 by SciPy's SLSQP, in two stages:
the optimal value ``t*``, then the optimal point closest to ``mu``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from came_grad_jax import weightings

# SOCP references for every case and radius (slow tier).
pytestmark = pytest.mark.slow


def _primal(h: np.ndarray, rho: float) -> tuple[float, np.ndarray]:
  """``(t*, u*)``: the primal optimum value and the optimal point closest to ``mu`` (float64)."""
  k, p = h.shape
  mu = h.mean(axis=0)
  r = rho * np.linalg.norm(mu)
  ball = {"type": "ineq", "fun": lambda x: r**2 - np.sum((x[:p] - mu) ** 2)}
  cons = [{"type": "ineq", "fun": lambda x: h @ x[:p] - x[p]}, ball]
  x0 = np.concatenate([mu, [np.min(h @ mu)]])
  best = minimize(lambda x: -x[p], x0, constraints=cons, method="SLSQP",
                  options={"ftol": 1e-15, "maxiter": 1000})
  t_star = -best.fun
  # Stage 2: among the points reaching t*, the one closest to mu.
  slack = 1e-9 * max(1.0, np.abs(h).max() * np.linalg.norm(mu))
  cons2 = [{"type": "ineq", "fun": lambda u: h @ u - (t_star - slack)},
           {"type": "ineq", "fun": lambda u: r**2 - np.sum((u - mu) ** 2)}]
  close = minimize(lambda u: np.sum((u - mu) ** 2), best.x[:p], constraints=cons2,
                   method="SLSQP", options={"ftol": 1e-15, "maxiter": 1000})
  return t_star, close.x


def _strongly_stationary(seed: int, k: int = 6, p: int = 4) -> np.ndarray:
  """K gradients in R^p with ``v^T H = 0`` for a positive ``v`` (rank p - 1)."""
  rng = np.random.default_rng(seed)
  v = rng.uniform(0.5, 2.0, size=k)
  h = rng.normal(size=(k, p))
  basis = np.linalg.qr(rng.normal(size=(p, p)))[0][:, : p - 1]  # the rows live in rank p-1
  h = h @ basis @ basis.T
  # Remove the component of H's columns along v: v^T H = 0.
  h -= np.outer(v, v @ h) / (v @ v)
  return h


def _weakly_stationary(seed: int) -> np.ndarray:
  """``h_1 = -2 h_2`` (0 in the hull of two tasks) and two generic tasks in R^5."""
  rng = np.random.default_rng(seed)
  h = rng.normal(size=(4, 5))
  h[0] = -2.0 * h[1]
  return h


def _rank_deficient(seed: int) -> np.ndarray:
  """Five tasks of rank 2 in R^6, not stationary."""
  rng = np.random.default_rng(seed)
  return rng.normal(size=(5, 2)) @ rng.normal(size=(2, 6))


CASES = {"strong": _strongly_stationary, "weak": _weakly_stationary,
         "rank_deficient": _rank_deficient}


def _u_rect(h: np.ndarray, rho: float, dtype) -> np.ndarray:
  a = jax.jit(weightings.rectify)(jnp.asarray(h @ h.T, dtype), rho)
  return np.asarray(a, np.float64) @ h


@pytest.mark.parametrize("rho", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_rectify_is_the_primal_optimum_closest_to_mu(case, rho, seed):
  h = CASES[case](seed)
  mu = h.mean(axis=0)
  scale = np.linalg.norm(h, axis=1).max()
  t_star, u_star = _primal(h, rho)
  with jax.enable_x64(True):
    u64 = _u_rect(h, rho, jnp.float64)
  u32 = _u_rect(h, rho, jnp.float32)
  for u, tol in ((u64, 1e-6), (u32, 1e-4)):
    # Feasible (in the ball), optimal (reaches t*), and the optimal point closest to mu.
    assert np.linalg.norm(u - mu) <= rho * np.linalg.norm(mu) * (1 + tol) + tol * scale
    assert np.min(h @ u) >= t_star - tol * scale**2, (case, rho, np.min(h @ u), t_star)
    assert np.linalg.norm(u - u_star) <= 10 * tol * scale, (case, rho, u, u_star)


def test_issue_example_strongly_stationary_rho_2_gives_zero():
  """6 tasks in 4-D orthogonal to a positive v: the optimum is 0 (the old answer was mu)."""
  h = _strongly_stationary(3)
  u = _u_rect(h, 2.0, jnp.float32)
  assert np.linalg.norm(u) <= 1e-5 * np.linalg.norm(h, axis=1).max()


@pytest.mark.parametrize("c", [1.0, 2.0])
@pytest.mark.parametrize("case", list(CASES))
def test_cagrad_is_non_conflicting_for_c_at_least_one(case, c):
  """For c >= 1 the ball holds u = 0, so the optimum conflicts with no task."""
  for seed in range(3):
    h = CASES[case](seed)
    coeffs = np.asarray(weightings.cagrad(c)(jnp.asarray(h @ h.T, jnp.float32)), np.float64)
    d = coeffs @ h
    assert np.min(h @ d) >= -1e-5 * np.linalg.norm(h, axis=1).max() ** 2, (case, c, seed)
