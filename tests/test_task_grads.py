"""value_and_task_grads against per-task jax.grad and analytic gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from came_grad_jax import value_and_task_grads


def losses_fn(params, x):
  pred = x @ params["w"] + params["b"]
  return jnp.stack([jnp.mean(pred**2), jnp.mean((pred - 1.0) ** 2), jnp.sum(params["w"] ** 2)])


@pytest.fixture
def problem():
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.asarray(rng.normal(size=(2,)))}
  return params, jnp.asarray(rng.normal(size=(5, 3)))


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("jit", [False, True])
def test_matches_per_task_grad(x64, problem, jit, vectorize):
  params, x = jax.tree.map(lambda a: a.astype(jnp.float64), problem)
  fn = value_and_task_grads(losses_fn, vectorize=vectorize)
  fn = jax.jit(fn) if jit else fn
  losses, grads = fn(params, x)
  np.testing.assert_allclose(losses, losses_fn(params, x), rtol=1e-14)
  for k in range(3):
    want = jax.grad(lambda p: losses_fn(p, x)[k])(params)
    for name in params:
      np.testing.assert_allclose(grads[name][k], want[name], rtol=1e-12)
  np.testing.assert_allclose(grads["w"][2], 2 * params["w"], rtol=1e-14)  # analytic


@pytest.mark.parametrize("vectorize", [True, False])
def test_has_aux(problem, vectorize):
  params, x = problem
  fn = value_and_task_grads(lambda p, x: (losses_fn(p, x), {"n": x.shape[0]}), has_aux=True,
                            vectorize=vectorize)
  (losses, aux), grads = fn(params, x)
  assert losses.shape == (3,) and aux == {"n": 5}
  assert grads["w"].shape == (3, 3, 2)


def test_single_forward_pass(problem):
  """The forward computation is traced once (one vjp), whatever K is."""
  params, x = problem
  calls = []

  def counted(p, x):
    calls.append(1)
    return losses_fn(p, x)

  value_and_task_grads(counted)(params, x)
  assert len(calls) == 1


@pytest.mark.parametrize("vectorize", [True, False])
def test_rejects_non_vector_losses(problem, vectorize):
  params, x = problem
  with pytest.raises(ValueError, match="vector of K losses"):
    value_and_task_grads(lambda p, x: jnp.sum(losses_fn(p, x)), vectorize=vectorize)(params, x)
  with pytest.raises(ValueError, match="has_aux=True"):
    value_and_task_grads(lambda p, x: (losses_fn(p, x)[None], None), has_aux=True,
                         vectorize=vectorize)(params, x)
  with pytest.raises(TypeError, match="floating point losses"):
    value_and_task_grads(lambda p, x: jnp.arange(3), vectorize=vectorize)(params, x)
