"""Optional peer implementations, imported only when installed (the ``bench`` extra).

* TorchJD (``torchjd``, PyTorch): ``CAGradWeighting`` (cvxpy + Clarabel on the
  host every call), ``MGDAWeighting``, ``UPGradWeighting`` (quadprog), and the
  matching aggregators on a K x P matrix.
* ``scipy_cagrad_weights``: CAGrad's dual solved as the authors' reference code
  does it (``scipy.optimize.minimize``, SLSQP, simplex bounds and an equality
  constraint), written here from the paper's equations.
"""

from __future__ import annotations

import numpy as np


def torchjd_available() -> bool:
  try:
    import torch  # noqa: F401
    import torchjd.aggregation  # noqa: F401
  except ImportError:
    return False
  return True


def torchjd_weightings(c: float = 0.4) -> dict:
  """name -> (callable on a torch (K, K) Gramian), for the peers that are importable."""
  import torchjd.aggregation as agg
  out = {}
  for name, make in (("torchjd_cagrad", lambda: agg.CAGradWeighting(c=c)),
                     ("torchjd_mgda", agg.MGDAWeighting),
                     ("torchjd_upgrad", agg.UPGradWeighting)):
    try:
      out[name] = make()
    except ImportError:  # an optional solver (cvxpy, quadprog) is missing
      pass
  return out


def torchjd_aggregators(c: float = 0.4) -> dict:
  """name -> aggregator on a torch (K, P) matrix, for the peers that are importable."""
  import torchjd.aggregation as agg
  out = {}
  for name, make in (("torchjd_cagrad", lambda: agg.CAGrad(c=c)),
                     ("torchjd_mgda", agg.MGDA),
                     ("torchjd_upgrad", agg.UPGrad)):
    try:
      out[name] = make()
    except ImportError:
      pass
  return out


def scipy_available() -> bool:
  try:
    import scipy.optimize  # noqa: F401
  except ImportError:
    return False
  return True


def scipy_cagrad_weights(gram: np.ndarray, c: float = 0.4) -> np.ndarray:
  """CAGrad coefficients (no ``1/(1+c^2)`` rescale) with SciPy's SLSQP, float64.

  ``alpha* = argmin_{alpha in simplex} alpha^T M 1/K + c ||mu|| sqrt(alpha^T M alpha)``,
  then ``coefficients = 1/K + c ||mu|| alpha* / ||h_alpha*||``.
  """
  from scipy.optimize import minimize
  m = np.asarray(gram, np.float64)
  k = m.shape[0]
  b = m.mean(axis=1)
  radius = c * np.sqrt(max(m.mean(), 0.0))
  fun = lambda a: a @ b + radius * np.sqrt(max(a @ m @ a, 0.0) + 1e-20)
  res = minimize(fun, np.full(k, 1.0 / k), method="SLSQP", bounds=[(0.0, 1.0)] * k,
                 constraints=({"type": "eq", "fun": lambda a: 1.0 - a.sum()},))
  alpha = res.x
  norm = np.sqrt(max(alpha @ m @ alpha, 0.0))
  lam = radius / norm if norm > 0 else 0.0
  return np.full(k, 1.0 / k) + lam * alpha
