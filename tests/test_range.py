"""Float range: zero task weights, tiny and huge task gradients, for every gradient method.

A zero weight or a tiny gradient is not a loss of information: the update must be the
method's answer (checked against the same method run in float64), never a NaN that
``optax.apply_if_finite`` would silently skip.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import came_grad_jax as cg

K3_ONLY = {"krum", "trimmed_mean"}  # need K >= 3
P = 24


def _methods():
  return [n for n in cg.method_names("gradient") if n not in K3_ONLY]


def _extra(tx, k):
  if isinstance(tx, optax.GradientTransformationExtraArgs):
    return {"losses": jnp.linspace(1.0, 2.0, k)}
  return {}


def _gradients(seed=0, k=2):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(k, P))


def _run(name, g, weights, dtype):
  """One update of method ``name`` on stacked gradients ``g`` (K, P) in ``dtype``."""
  tx = cg.make_method(name, task_weights=np.asarray(weights, dtype))
  params = jnp.zeros(P, dtype)
  out, state = jax.jit(lambda g, s: tx.update(g, s, params, **_extra(tx, len(weights))))(
      jnp.asarray(g, dtype), tx.init(params))
  return np.asarray(out, np.float64), state


def _rel_err(got, want):
  return np.linalg.norm(got - want) / max(np.linalg.norm(want), np.finfo(np.float64).tiny)


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("name", _methods())
def test_zero_task_weight_gives_the_other_tasks_answer(name):
  """``task_weights=[0, 1]`` is legal: finite, the float64 answer, and count advances."""
  g = _gradients()
  got, state = _run(name, g, [0.0, 1.0], jnp.float32)
  assert np.all(np.isfinite(got)), name
  with jax.enable_x64(True):
    want, _ = _run(name, g, [0.0, 1.0], jnp.float64)
  assert _rel_err(got, want) <= 1e-4, name
  if isinstance(state, cg.AggregateState):
    assert int(state.count) == 1


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("name", _methods())
def test_tiny_task_gradient_next_to_an_ordinary_one(name):
  """Entries of 1e-17 (norm ~5e-17, a converged auxiliary task) beside O(1): no NaN."""
  g = _gradients(1)
  g[0] = 1e-17 * np.sign(g[0])
  got, _ = _run(name, g, [1.0, 1.0], jnp.float32)
  assert np.all(np.isfinite(got)), name
  with jax.enable_x64(True):
    want, _ = _run(name, g, [1.0, 1.0], jnp.float64)
  assert _rel_err(got, want) <= 1e-4, name


def test_ls_returns_the_other_gradient_when_one_is_tiny():
  g = _gradients(2)
  g[0] = 1e-17
  got, _ = _run("ls", g, [1.0, 1.0], jnp.float32)
  np.testing.assert_allclose(got, g.sum(0), rtol=1e-6, atol=0)


def test_checked_gram_recovers_squares_that_would_flush():
  """Entries of 1e-20 square to below float32's smallest normal; the rescue keeps them."""
  g = _gradients(3)
  g[0] *= 1e-20
  m, ok = jax.jit(cg._gram.checked_gram)(jnp.asarray(g, jnp.float32), jnp.ones(2))
  want = g @ g.T
  assert bool(ok)
  # The tiny task's own squared norm is below float32's normal range: compare the rest.
  assert abs(float(m[1, 1]) - want[1, 1]) <= 1e-5 * want[1, 1]
  assert abs(float(m[0, 1]) - want[0, 1]) <= 1e-5 * abs(want[0, 1])


def test_all_tasks_tiny_is_a_real_loss_and_gives_nan():
  g = _gradients(4) * 1e-21
  m, ok = jax.jit(cg._gram.checked_gram)(jnp.asarray(g, jnp.float32), jnp.ones(2))
  assert not bool(ok)
