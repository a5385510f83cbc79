"""``aggregate(..., precise_gram=True)``: float32 gradients, Gram and solve in float64 (issue 20).

TorchJD's property tests, run its way: float32 matrices of a given rank with more rows
(tasks) than the rank, atol 1e-4. UPGrad on strongly stationary 20 x 100 inputs must give
``||H d|| ~ 0``; ConFIG must be invariant to permuting the tasks and linear in the tasks'
scales. A float32 Gram matrix (squared condition number) and a float32 solve miss these
by 1e-4 to 3e-3; the precise option meets them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import came_grad_jax as cg
from benchmarks.precision import strongly_stationary as _strongly_stationary
from came_grad_jax import weightings
from came_grad_jax._gram import precise_gram
from tests.tiers import grid

ATOL = 1e-4


def _rank_matrix(rng, m, n, rank):
  return rng.normal(size=(m, rank)) @ rng.normal(size=(rank, n))


def _update(weighting, h, precise):
  """One update of ``aggregate(weighting)`` on float32 task gradients ``h`` (K, P)."""
  tx = cg.aggregate(weighting, num_tasks=h.shape[0], precise_gram=precise)
  params = jnp.zeros(h.shape[1], jnp.float32)
  out, _ = jax.jit(tx.update)(jnp.asarray(h, jnp.float32), tx.init(params), params)
  assert out.dtype == jnp.float32
  return np.asarray(out, np.float64)


@pytest.mark.parametrize("seed", grid(range(3), fast=[0]))
def test_upgrad_strongly_stationary_is_non_conflicting_and_zero(seed):
  h = _strongly_stationary(seed)
  with jax.enable_x64(True):
    d = _update(weightings.upgrad(), h, precise=True)
  assert np.linalg.norm(h.astype(np.float64) @ d) <= ATOL


@pytest.mark.slow
@pytest.mark.parametrize("seed", grid(range(3), fast=[0]))
def test_config_permutation_invariant(seed):
  rng = np.random.default_rng(100 + seed)
  h = _rank_matrix(rng, 20, 10, 5).astype(np.float32)
  perm = rng.permutation(20)
  with jax.enable_x64(True):
    d = _update(weightings.config(), h, precise=True)
    d_perm = _update(weightings.config(), h[perm], precise=True)
  np.testing.assert_allclose(d_perm, d, atol=ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", grid(range(3), fast=[0]))
def test_config_linear_under_scaling(seed):
  """``d(diag(a c1 + b c2) H) = a d(diag(c1) H) + b d(diag(c2) H)`` for c1, c2, a, b > 0."""
  rng = np.random.default_rng(200 + seed)
  h = _rank_matrix(rng, 20, 10, 5)
  c1, c2 = rng.uniform(0.1, 1.0, 20), rng.uniform(0.1, 1.0, 20)
  a, b = rng.uniform(0.1, 1.0, 2)
  with jax.enable_x64(True):
    d1, d2, d = (_update(weightings.config(), (c[:, None] * h).astype(np.float32), precise=True)
                 for c in (c1, c2, a * c1 + b * c2))
  np.testing.assert_allclose(d, a * d1 + b * d2, atol=ATOL, rtol=0)


def test_precise_gram_is_float64_and_exact():
  """The Gram matrix of float32 gradients, accumulated in float64, vs NumPy's float64."""
  rng = np.random.default_rng(7)
  g = rng.normal(size=(4, 3000)).astype(np.float32)
  with jax.enable_x64(True):
    m = np.asarray(precise_gram({"w": jnp.asarray(g)}))
  want = g.astype(np.float64) @ g.astype(np.float64).T
  assert np.abs(m - want).max() <= 1e-12 * np.abs(want).max()


def test_precise_gram_needs_x64():
  tx = cg.aggregate(weightings.upgrad(), num_tasks=2, precise_gram=True)
  params = jnp.zeros(3)
  with pytest.raises(ValueError, match="jax_enable_x64"):
    tx.update(jnp.ones((2, 3)), tx.init(params), params)


def test_precise_gram_must_be_a_bool():
  with pytest.raises(TypeError, match="precise_gram"):
    cg.aggregate(weightings.upgrad(), precise_gram="yes")  # type: ignore[arg-type]
