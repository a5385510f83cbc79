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


def losses_tuple(params, x):
  return tuple(losses_fn(params, x)[k] for k in range(3))


@pytest.mark.parametrize("vectorize", [True, False])
def test_tuple_of_scalar_losses_gives_the_same_result(x64, problem, vectorize):
  params, x = jax.tree.map(lambda a: a.astype(jnp.float64), problem)
  want_losses, want = value_and_task_grads(losses_fn, vectorize=vectorize)(params, x)
  losses, got = jax.jit(value_and_task_grads(losses_tuple, vectorize=vectorize))(params, x)
  assert losses.shape == (3,)
  np.testing.assert_allclose(losses, want_losses, rtol=1e-15)
  for name in params:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-14)


def test_separate_passes_prune_what_a_tuple_loss_does_not_use():
  # L_0 goes through `traced_sin`, whose backward rule records each time it is
  # traced; L_1 does not use it. With a tuple of scalars only L_0's backward
  # pass runs the rule; a stacked vector sends a zero cotangent through it
  # in L_1's pass as well.
  backward_calls = []

  @jax.custom_vjp
  def traced_sin(x):
    return jnp.sin(x)

  def fwd(x):
    return jnp.sin(x), x

  def bwd(x, ct):
    backward_calls.append(1)
    return (ct * jnp.cos(x),)

  traced_sin.defvjp(fwd, bwd)
  params = {"a": jnp.ones(3), "b": jnp.ones(2)}
  as_tuple = lambda p: (jnp.sum(traced_sin(p["a"])), jnp.sum(p["b"] ** 2))
  value_and_task_grads(as_tuple, vectorize=False)(params)
  assert len(backward_calls) == 1
  value_and_task_grads(lambda p: jnp.stack(as_tuple(p)), vectorize=False)(params)
  assert len(backward_calls) == 1 + 2


def test_rejects_bad_loss_sequences(problem):
  params, x = problem
  with pytest.raises(ValueError, match="pass has_aux=True"):
    value_and_task_grads(lambda p, x: (losses_fn(p, x), {"aux": 1.0}))(params, x)
  with pytest.raises(ValueError, match="K scalar losses"):
    value_and_task_grads(lambda p, x: ())(params, x)
  with pytest.raises(TypeError, match="floating point scalars"):
    value_and_task_grads(lambda p, x: (jnp.sum(p["w"]), jnp.int32(1)), vectorize=False)(params, x)
