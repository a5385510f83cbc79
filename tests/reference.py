"""Float64 NumPy references written from docs/design.md's equations, for the tests.

Independent of the library: S1's dual is solved here by SciPy's SLSQP from
several starts, then polished by solving the KKT system on the optimal support
exactly; the update is formed from the task-gradient vectors themselves, not
from the Gram matrix.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from scipy.optimize import minimize, nnls


def task_gradients(case: str, num_tasks: int, dim: int = 40, seed: int = 0) -> np.ndarray:
  """(K, P) float64 task gradients for a named case."""
  rng = np.random.default_rng(seed + 1000 * num_tasks)
  g = rng.normal(size=(num_tasks, dim))
  if case == "nearly_parallel":
    g = g[:1] + 1e-3 * g
  elif case == "opposed":
    g[1] = -g[0]
  elif case == "one_zero":
    g[-1] = 0.0
  elif case == "badly_scaled":
    g[0] *= 1e-6
    g[1] *= 1e6
  elif case != "random":
    raise ValueError(case)
  return g


def dual_objective(alpha, gram, radius):
  k = gram.shape[0]
  b = gram @ np.ones(k) / k
  return alpha @ b + radius * np.sqrt(max(alpha @ gram @ alpha, 0.0))


def _kkt_polish(gram, radius, support):
  """Exact stationary point of the dual restricted to a support (None if there is none).

  Solved in the variables ``beta_k = ||h_k|| alpha_k`` so that the system matrix
  is the (well-conditioned) correlation matrix even for badly scaled tasks:
  ``b' + r C beta / t = nu d`` with ``d_k = 1 / ||h_k||`` and ``d^T beta = 1``.
  """
  k = gram.shape[0]
  b = gram @ np.ones(k) / k
  s = list(support)
  n = np.sqrt(np.diag(gram)[s])
  if np.any(n == 0):
    return None
  corr = gram[np.ix_(s, s)] / np.outer(n, n)
  if np.linalg.cond(corr) > 1e10:
    return None
  cinv = np.linalg.inv(corr)
  d, bp = 1.0 / n, b[s] / n
  aa, bb, cc = d @ cinv @ d, d @ cinv @ bp, bp @ cinv @ bp
  disc = bb**2 - aa * (cc - radius**2)
  if disc <= 0:
    return None
  nu = (bb + np.sqrt(disc)) / aa
  beta = cinv @ (nu * d - bp) / np.sqrt(disc)
  alpha = np.zeros(k)
  alpha[s] = beta / n
  if np.any(alpha < -1e-12 * np.abs(alpha).max()):
    return None
  alpha = np.maximum(alpha, 0.0)
  return alpha / alpha.sum()


def solve_dual(gram: np.ndarray, rho: float) -> np.ndarray:
  """alpha* = argmin_simplex alpha^T M 1/K + rho ||mu|| sqrt(alpha^T M alpha)."""
  k = gram.shape[0]
  radius = rho * np.sqrt(max(np.ones(k) @ gram @ np.ones(k), 0.0)) / k
  scale = np.trace(gram) if np.trace(gram) > 0 else 1.0
  g = gram / scale
  r = radius / np.sqrt(scale)
  f = lambda a: dual_objective(a, g, r)
  starts = [np.full(k, 1.0 / k)] + list(np.random.default_rng(0).dirichlet(np.ones(k), size=2))
  best = None
  for x0 in starts:
    res = minimize(f, x0, method="SLSQP", bounds=[(0, 1)] * k,
                   constraints={"type": "eq", "fun": lambda a: a.sum() - 1},
                   options={"ftol": 1e-16, "maxiter": 2000})
    x = np.clip(res.x, 0, None)
    x /= x.sum()
    if best is None or f(x) < f(best):
      best = x
  if r > 0:
    if k <= 8:
      supports = [c for size in range(1, k + 1) for c in itertools.combinations(range(k), size)]
    else:  # too many to enumerate: the support SLSQP found, at a few thresholds
      supports = [tuple(np.flatnonzero(best > t * best.max())) for t in (0.0, 1e-9, 1e-6)]
    for support in supports:
      for cand in (_kkt_polish(g, r, support), _kink_point(g, support)):
        if cand is not None and f(cand) < f(best) + 1e-15:
          best = cand
  return best


def _kink_point(gram, support):
  """The simplex point on a support where h_alpha vanishes, if there is one."""
  s = list(support)
  m = gram[np.ix_(s, s)]
  w, v = np.linalg.eigh(m)
  null = v[:, w <= 1e-13 * max(w.max(), 1e-300)]
  if null.shape[1] != 1:
    return None
  x = null[:, 0] / null[:, 0].sum() if abs(null[:, 0].sum()) > 1e-12 else None
  if x is None or np.any(x < -1e-12):
    return None
  alpha = np.zeros(gram.shape[0])
  alpha[s] = np.maximum(x, 0.0)
  return alpha / alpha.sum()


def came_update(h: np.ndarray, rho: float, kappa: float, nu: float,
                noise: float = 1e-12) -> np.ndarray:
  """g_final for task-weighted gradients h (K, P), following docs/design.md literally."""
  return _came_update(h.tobytes(), h.shape, rho, kappa, nu, noise).copy()


@functools.lru_cache(maxsize=256)
def _came_update(data, shape, rho, kappa, nu, noise):
  h = np.frombuffer(data).reshape(shape)
  k = h.shape[0]
  g_joint = h.sum(0)
  mu = g_joint / k
  total = np.abs(h).sum(0)
  if np.linalg.norm(g_joint) <= noise * np.linalg.norm(total):
    g_joint = np.zeros_like(g_joint)
    mu = np.zeros_like(mu)
  u_rect = mu
  if rho > 0 and np.linalg.norm(mu) > 0:
    alpha = solve_dual(h @ h.T, rho)
    h_alpha = alpha @ h
    scale = np.abs(alpha) @ np.linalg.norm(h, axis=1)
    if np.linalg.norm(h_alpha) > noise * scale:
      u_rect = mu + rho * np.linalg.norm(mu) * h_alpha / np.linalg.norm(h_alpha)
    else:  # Pareto-stationary: the optimal point closest to mu, pi_C(mu) (Moreau)
      lam, _ = nnls(h.T, -mu)
      u_rect = mu + h.T @ lam
  n = np.linalg.norm(u_rect)
  u_en = kappa * np.linalg.norm(g_joint) / n * u_rect if n > 0 else np.zeros_like(u_rect)
  return (1 - nu) * u_en + nu * g_joint
