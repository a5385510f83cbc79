"""came_grad / aggregate as Optax transformations: correctness and composition."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from came_grad_jax import AggregateState, aggregate, came_grad, value_and_task_grads, weightings
from tests import reference

K = 3
WEIGHTS = np.array([1.0, 4.0, 0.5])


def losses_fn(params, x):
  pred = jnp.tanh(x @ params["w"]) @ params["v"]
  return jnp.stack([jnp.mean((pred - 1.0) ** 2), jnp.mean((pred + 0.5) ** 2),
                    jnp.mean(params["w"] ** 2)])


def setup(dtype=jnp.float32, seed=0):
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.normal(size=(4, 6)), dtype),
            "v": jnp.asarray(rng.normal(size=(6,)), dtype)}
  return params, jnp.asarray(rng.normal(size=(8, 4)), dtype)


def flat(tree):
  return np.concatenate([np.asarray(x, np.float64).reshape(K, -1) for x in jax.tree.leaves(tree)], 1)


def test_update_matches_float64_reference(x64):
  params, x = setup(jnp.float64)
  _, grads = value_and_task_grads(losses_fn)(params, x)
  tx = came_grad(0.5, 1.5, 0.2, task_weights=WEIGHTS)
  update, state = jax.jit(tx.update)(grads, tx.init(params))
  want = reference.came_update(flat(grads) * WEIGHTS[:, None], 0.5, 1.5, 0.2)
  got = np.concatenate([np.asarray(u).ravel() for u in jax.tree.leaves(update)])
  assert np.linalg.norm(got - want) <= 1e-8 * np.linalg.norm(want)
  assert isinstance(state, AggregateState) and int(state.count) == 1


def test_update_is_grad_of_stop_gradient_weighted_loss(x64):
  """g_final = grad of sum_k stop_gradient(c_k) w_k L_k."""
  params, x = setup(jnp.float64)
  _, grads = value_and_task_grads(losses_fn)(params, x)
  tx = came_grad(task_weights=WEIGHTS)
  update, state = tx.update(grads, tx.init(params))
  c = state.diagnostics.coefficients
  want = jax.grad(lambda p: jnp.sum(jax.lax.stop_gradient(c) * WEIGHTS * losses_fn(p, x)))(params)
  for a, b in zip(jax.tree.leaves(update), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_linear_scalarization_is_grad_of_weighted_sum():
  params, x = setup()
  _, grads = value_and_task_grads(losses_fn)(params, x)
  tx = aggregate(weightings.linear_scalarization(), WEIGHTS)
  update, _ = tx.update(grads, tx.init(params))
  want = jax.grad(lambda p: jnp.sum(WEIGHTS * losses_fn(p, x)))(params)
  for a, b in zip(jax.tree.leaves(update), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_chain_with_adamw_many_steps_one_compile():
  params, x = setup()
  tx = optax.chain(came_grad(task_weights=WEIGHTS), optax.adamw(1e-2))
  state = tx.init(params)
  traces = []

  @jax.jit
  def step(p, s):
    traces.append(1)
    losses, grads = value_and_task_grads(losses_fn)(p, x)
    u, s = tx.update(grads, s, p)
    return optax.apply_updates(p, u), s, losses

  first = None
  for _ in range(50):
    params, state, losses = step(params, state)
    first = losses if first is None else first
  assert len(traces) == 1
  assert float(jnp.sum(WEIGHTS * losses)) < float(jnp.sum(WEIGHTS * first))
  diag = optax.tree_utils.tree_get(state, "diagnostics")
  assert diag.coefficients.shape == (K,) and np.all(np.isfinite(diag.cosine))


def test_inject_hyperparams_changes_take_effect():
  params, x = setup()
  _, grads = value_and_task_grads(losses_fn)(params, x)
  tx = optax.inject_hyperparams(came_grad)(rho=0.5, kappa=1.5, nu=0.2, task_weights=WEIGHTS)
  state = tx.init(params)
  update = jax.jit(tx.update)
  u1, state = update(grads, state)
  state.hyperparams["rho"] = jnp.asarray(0.0)
  state.hyperparams["kappa"] = jnp.asarray(1.0)
  state.hyperparams["nu"] = jnp.asarray(0.0)
  u2, state = update(grads, state)
  ls = jax.tree.map(lambda g: jnp.tensordot(jnp.asarray(WEIGHTS, g.dtype), g, 1), grads)
  for a, b in zip(jax.tree.leaves(u2), jax.tree.leaves(ls)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # rho=0, kappa=1, nu=0 is LS
  assert not np.allclose(u1["w"], u2["w"])


@pytest.mark.slow
def test_schedules_are_evaluated_at_the_step_count():
  params, x = setup()
  _, grads = value_and_task_grads(losses_fn)(params, x)
  nu = lambda count: jnp.where(count >= 1, 1.0, 0.0)
  tx = came_grad(rho=0.5, kappa=2.0, nu=nu, task_weights=WEIGHTS)
  state = tx.init(params)
  _, state = tx.update(grads, state)
  np.testing.assert_allclose(float(state.diagnostics.energy_gain), 2.0, rtol=1e-5)  # nu = 0
  _, state = tx.update(grads, state)
  np.testing.assert_allclose(state.diagnostics.coefficients, np.ones(K), rtol=1e-6)  # nu = 1


def test_apply_if_finite_skips_nan_step():
  params, x = setup()
  _, grads = value_and_task_grads(losses_fn)(params, x)
  tx = optax.chain(came_grad(task_weights=WEIGHTS), optax.apply_if_finite(optax.adam(1e-2), 3))
  state = tx.init(params)
  u, state = tx.update(grads, state, params)
  params = optax.apply_updates(params, u)
  bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads)
  u_bad, state_bad = tx.update(bad, state, params)
  assert all(np.all(np.asarray(l) == 0) for l in jax.tree.leaves(u_bad))  # params intact
  assert not bool(state_bad[1].last_finite)
  for a, b in zip(jax.tree.leaves(state_bad[0]), jax.tree.leaves(state[0])):
    np.testing.assert_array_equal(a, b)  # came_grad's state intact
  for a, b in zip(jax.tree.leaves(state_bad[1].inner_state), jax.tree.leaves(state[1].inner_state)):
    np.testing.assert_array_equal(a, b)  # adam's state intact


def test_multisteps_accumulates_combined_updates():
  params, x = setup()
  tx = optax.chain(came_grad(task_weights=WEIGHTS), optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2))
  state = tx.init(params)
  combined, p = [], params
  for i in range(2):
    _, grads = value_and_task_grads(losses_fn)(params, x * (1 + i))
    u, state = tx.update(grads, state, p)
    combined.append(came_grad(task_weights=WEIGHTS).update(grads, came_grad(task_weights=WEIGHTS).init(params))[0])
    if i == 0:
      assert all(np.all(np.asarray(l) == 0) for l in jax.tree.leaves(u))
  mean = jax.tree.map(lambda a, b: -0.1 * (a + b) / 2, *combined)
  for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(mean)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_multi_transform_shared_came_heads_ls():
  params, x = setup()
  _, grads = value_and_task_grads(losses_fn)(params, x)
  labels = {"w": "shared", "v": "head"}
  tx = optax.multi_transform(
      {"shared": came_grad(task_weights=WEIGHTS),
       "head": aggregate(weightings.linear_scalarization(), WEIGHTS)}, labels)
  u, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(u["v"], np.tensordot(WEIGHTS, grads["v"], 1), rtol=1e-5)
  only_w = came_grad(task_weights=WEIGHTS)
  want, _ = only_w.update({"w": grads["w"]}, only_w.init({"w": params["w"]}))
  np.testing.assert_allclose(u["w"], want["w"], rtol=1e-6)


@pytest.mark.slow
def test_bf16_gradients():
  params, x = setup()
  _, grads = value_and_task_grads(losses_fn)(params, x)
  bf = jax.tree.map(lambda g: g.astype(jnp.bfloat16), grads)
  tx = came_grad(task_weights=WEIGHTS)
  u, state = jax.jit(tx.update)(bf, tx.init(jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)))
  assert all(l.dtype == jnp.bfloat16 for l in jax.tree.leaves(u))
  assert state.diagnostics.cosine.dtype == jnp.float32
  ref_u, _ = tx.update(jax.tree.map(lambda g: g.astype(jnp.float32), bf), tx.init(params))
  for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ref_u)):
    a = np.asarray(a, np.float32)
    assert np.linalg.norm(a - b) <= 1e-2 * np.linalg.norm(b)


def test_state_round_trip_continues_identically():
  params, x = setup()
  tx = optax.chain(came_grad(task_weights=WEIGHTS), optax.adamw(1e-2))

  @jax.jit
  def step(p, s):
    _, grads = value_and_task_grads(losses_fn)(p, x)
    u, s = tx.update(grads, s, p)
    return optax.apply_updates(p, u), s

  state = tx.init(params)
  for _ in range(3):
    params, state = step(params, state)
  leaves, treedef = jax.tree.flatten(state)
  restored = jax.tree.unflatten(treedef, [np.array(l) for l in leaves])  # e.g. Orbax round trip
  p1, s1 = step(params, state)
  p2, s2 = step(params, restored)
  for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2))):
    np.testing.assert_array_equal(a, b)


def test_init_on_abstract_params():
  params, _ = setup()
  abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  shapes = jax.eval_shape(came_grad(num_tasks=K).init, abstract)
  assert shapes.diagnostics.cosine.shape == (K, K)


@pytest.mark.parametrize("kind", ["zero", "opposed"])
def test_zero_and_opposed_gradients_are_finite(kind):
  params, _ = setup()
  g = np.random.default_rng(1).normal(size=(2, 4, 6)).astype(np.float32)
  g = np.zeros_like(g) if kind == "zero" else np.stack([g[0], -g[0]])
  tx = came_grad(num_tasks=2)
  u, state = tx.update({"w": jnp.asarray(g)}, tx.init({"w": params["w"]}))
  assert np.all(np.isfinite(u["w"])) and np.abs(np.asarray(u["w"])).max() <= 1e-5
  assert all(np.all(np.isfinite(l)) for l in jax.tree.leaves(state))


@pytest.mark.parametrize("kwargs,pattern", [
    ({"rho": -0.5, "num_tasks": 2}, "^rho must"),
    ({"kappa": 0.0, "num_tasks": 2}, "^kappa must"),
    ({"nu": 1.2, "num_tasks": 2}, "^nu must"),
    ({"task_weights": [1.0, -1.0]}, "^task_weights must be finite"),
    ({"task_weights": [1.0, float("inf")]}, "^task_weights must be finite"),
    ({"task_weights": [[1.0, 2.0]]}, "^task_weights must be a non-empty vector"),
    ({"num_tasks": 0}, "^num_tasks must be a positive int"),
])
def test_bad_arguments_raise(kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    came_grad(**kwargs)


def test_bad_updates_raise():
  params, _ = setup()
  tx = came_grad(task_weights=WEIGHTS)
  state = tx.init(params)
  with pytest.raises(ValueError, match="K = 3 tasks"):  # task_weights of the wrong length
    tx.update({"w": jnp.zeros((2, 4, 6)), "v": jnp.zeros((2, 6))}, state)
  with pytest.raises(ValueError, match="share the leading task axis"):
    tx.update({"w": jnp.zeros((3, 4, 6)), "v": jnp.zeros((2, 6))}, state)
  with pytest.raises(ValueError, match="leading axis K on every leaf"):  # unstacked
    tx.update({"w": jnp.zeros((4, 6)), "v": jnp.zeros((6,))}, state)
  with pytest.raises(TypeError, match="floating point"):
    tx.update({"w": jnp.zeros((3, 4, 6), jnp.int32), "v": jnp.zeros((3, 6))}, state)
