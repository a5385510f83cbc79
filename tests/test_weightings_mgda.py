"""MGDA: the min-norm point of the hull, against an exact float64 active-set reference."""

import itertools

import chex
import jax
import numpy as np
from absl.testing import parameterized

from came_grad_jax import weightings
from tests import mtl_checks


def min_norm_reference(h: np.ndarray) -> np.ndarray:
  """``argmin_{alpha in simplex} ||alpha^T h||``: the KKT point over every support, float64.

  On a support S, in the variables ``beta = ||h_k|| alpha_k`` (well scaled for
  badly scaled tasks) the bordered system ``[[C, d], [d^T, 0]] [beta; t] = [0; 1]``
  (``C`` the cosine matrix, ``d_k = 1 / ||h_k||``) gives the min-norm point of
  the affine hull of ``h_S``; the answer is the one that is feasible and
  satisfies ``<h_k, x> >= ||x||^2`` for every k.
  """
  k = h.shape[0]
  norms = np.linalg.norm(h, axis=1)
  if np.any(norms == 0):  # 0 is in the hull
    return np.eye(k)[np.argmin(norms)]
  best, best_value = None, np.inf
  for size in range(1, k + 1):
    for support in itertools.combinations(range(k), size):
      s = list(support)
      u = h[s] / norms[s, None]
      d = 1.0 / norms[s]
      bordered = np.block([[u @ u.T, d[:, None]], [d[None, :], np.zeros((1, 1))]])
      rhs = np.zeros(size + 1)
      rhs[-1] = 1.0
      beta = np.linalg.lstsq(bordered, rhs, rcond=None)[0][:size]
      alpha = np.zeros(k)
      alpha[s] = beta / norms[s]
      if np.any(alpha < -1e-12) or abs(alpha.sum() - 1) > 1e-9:
        continue
      x = alpha @ h
      value = x @ x
      scale = (np.abs(alpha) @ norms) * norms
      optimal = np.all(h @ x >= value - 1e-9 * scale)
      if optimal and value < best_value:
        best, best_value = alpha, value
  return np.full(k, 1.0 / k) if best is None else best


class MGDATest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(k=(2, 3, 5), case=mtl_checks.CASES[:-1])
  def test_matches_float64_reference(self, k, case):
    h = mtl_checks.gradients(case, k)
    c = mtl_checks.coefficients(weightings.mgda(), h, wrap=self.variant)
    self.assertLess(mtl_checks.update_error(h, c, min_norm_reference(h)), 1e-7)

  def test_min_norm_and_non_conflicting_on_random_grams(self):
    rng = np.random.default_rng(0)
    weighting = jax.jit(weightings.mgda())
    with jax.enable_x64(True):
      for k in (3, 4, 6):
        for _ in range(5):
          h = rng.normal(size=(k, int(rng.integers(2, 8)))) * np.exp(rng.normal(size=(k, 1)))
          c = np.asarray(weighting(h @ h.T))
          np.testing.assert_allclose(c.sum(), 1.0, rtol=1e-12)
          self.assertTrue(np.all(c >= 0))
          x = c @ h
          # min-norm: no point of the hull is shorter (KKT: <h_k, x> >= ||x||^2).
          self.assertTrue(np.all(h @ x >= x @ x - 1e-8 * np.abs(h).sum() ** 2))
          self.assertLessEqual(mtl_checks.worst_conflict(h, c), 1e-10)

  def test_known_two_task_solution(self):
    c = weightings.mgda()(np.array([[1.0, 0.0], [0.0, 4.0]], np.float32))
    np.testing.assert_allclose(c, [0.8, 0.2], rtol=1e-6)

  def test_finite_on_edge_cases(self):
    mtl_checks.assert_finite_on_edge_cases(weightings.mgda())
