"""What a user meets first: factories without K, donation, NaN handling, clear errors.

Each test is one of the faults an adversarial probe found (issue 9), turned into
the behaviour the library now guarantees.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import came_grad_jax as cg

PARAMS = {"w": jnp.zeros(3)}
G = {"w": jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])}
G3 = {"w": jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.5, 1.0, -2.0]])}


@pytest.mark.slow
def test_paper_defaults_as_the_paper_writes_them():
  """``came_grad()`` and ``inject_hyperparams(came_grad)(rho, kappa, nu)`` work with no K."""
  for tx in (cg.came_grad(), cg.mgda(), cg.upgrad(), cg.cagrad(c=0.5),
             optax.inject_hyperparams(cg.came_grad)(rho=0.5, kappa=1.5, nu=0.2)):
    out, state = jax.jit(tx.update)(G, tx.init(PARAMS), PARAMS)
    assert out["w"].shape == (3,) and np.all(np.isfinite(out["w"]))
  # Injected hyperparameters are honoured: nu = 1 is linear scalarization.
  tx = optax.inject_hyperparams(cg.came_grad)(rho=0.5, kappa=1.5, nu=1.0)
  out, _ = jax.jit(tx.update)(G, tx.init(PARAMS), PARAMS)
  joint = np.asarray(G["w"]).sum(0)
  assert np.linalg.norm(out["w"] - joint) <= 1e-6 * np.linalg.norm(joint)


@pytest.mark.slow
def test_diagnostics_with_and_without_k():
  known = cg.came_grad(num_tasks=2)
  _, state = known.update(G, known.init(PARAMS))
  assert state.diagnostics.coefficients.shape == (2,)
  assert state.diagnostics.cosine.shape == (2, 2)
  unknown = cg.came_grad()
  _, state2 = unknown.update(G, unknown.init(PARAMS))
  assert state2.diagnostics.coefficients is None and state2.diagnostics.cosine is None
  for field in ("drift_deg", "diffusion_decay", "energy_gain", "min_inner"):
    a, b = getattr(state.diagnostics, field), getattr(state2.diagnostics, field)
    assert abs(float(a) - float(b)) <= 1e-6 * (1 + abs(float(a))), field


@pytest.mark.slow
def test_inject_hyperparams_with_num_tasks_points_to_static_args():
  with pytest.raises(TypeError, match="static_args"):
    optax.inject_hyperparams(cg.came_grad)(rho=0.5, num_tasks=2).init(PARAMS)
  tx = optax.inject_hyperparams(cg.came_grad, static_args=("num_tasks",))(rho=0.5, num_tasks=2)
  jax.jit(tx.update)(G, tx.init(PARAMS), PARAMS)


def _gradient_methods(num_tasks: int) -> dict:
  return {name: cg.make_method(name, num_tasks=num_tasks) for name in cg.method_names("gradient")}


def _extra(tx) -> dict:
  """Methods that also take the task losses (GradNorm) get them as an extra argument."""
  if isinstance(tx, optax.GradientTransformationExtraArgs):
    return {"losses": jnp.array([1.0, 0.5, 2.0])}
  return {}


def _initial_states(txs: dict) -> dict:
  states = {name: tx.init(PARAMS) for name, tx in txs.items()}
  states["loss"] = {name: cg.make_method(name).init(2) for name in cg.method_names("loss")}
  return states


def test_state_can_be_donated():
  """Every field of every initial state is its own buffer (the standard donated train step),
  and a later ``init`` hands out new buffers: donating one state leaves the next one valid
  (issue 20, item 4: the random methods' key was shared by every ``init``)."""
  txs = _gradient_methods(3)
  states = _initial_states(txs)
  count = len(jax.tree.leaves(states))
  assert len(jax.tree.leaves(jax.jit(lambda s: s, donate_argnums=0)(states))) == count
  assert all(leaf.is_deleted() for leaf in jax.tree.leaves(states))
  later = _initial_states(txs)
  deleted = {name: sum(leaf.is_deleted() for leaf in jax.tree.leaves(state))
             for name, state in later.items() if name != "loss"}
  deleted |= {name: sum(leaf.is_deleted() for leaf in jax.tree.leaves(state))
              for name, state in later["loss"].items()}
  assert not any(deleted.values()), {name: n for name, n in deleted.items() if n}


def test_donated_update_twice_from_fresh_states():
  """The issue's reproduction: a donated jitted update, called on two fresh initial states."""
  for tx in (cg.pcgrad(key=0), cg.graddrop(key=0), cg.gradvac(num_tasks=2)):
    f = jax.jit(tx.update, donate_argnums=(1,))
    for _ in range(2):
      out, _ = f(G, tx.init(PARAMS), PARAMS)
      assert np.all(np.isfinite(out["w"]))
  lw = cg.loss_weighting.rlw(key=0)
  f = jax.jit(lw.update, donate_argnums=(1,))
  for _ in range(2):
    weights, _ = f(jnp.array([1.0, 2.0]), lw.init(2))
    assert np.all(np.isfinite(weights))


@pytest.mark.slow
def test_non_finite_gradients_reach_the_update_under_jit():
  """Every gradient method, in one compiled function: NaN in, NaN out, state untouched."""
  g = {"w": jnp.array([[1.0, 2.0, jnp.nan], [3.0, -1.0, 1.0], [0.5, 1.0, -2.0]])}
  g_ok = {"w": jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.5, 1.0, -2.0]])}
  txs = _gradient_methods(3)
  # apply_if_finite around the base optimizer skips the bad step.
  safe = {name: optax.chain(tx, optax.apply_if_finite(optax.sgd(0.1), max_consecutive_errors=3))
          for name, tx in txs.items()}

  @jax.jit
  def run(states, safe_states):
    out = {}
    for name, tx in txs.items():
      # One good step first, so that counters, keys and averages are not at their initial values.
      _, before = tx.update(g_ok, states[name], PARAMS, **_extra(tx))
      bad, after = tx.update(g, before, PARAMS, **_extra(tx))
      good, _ = tx.update(g_ok, after, PARAMS, **_extra(tx))
      skipped, s = safe[name].update(g, safe_states[name], PARAMS, **_extra(tx))
      out[name] = (bad["w"], good["w"], skipped["w"], s[1].notfinite_count,
                   _comparable(before), _comparable(after))
    return out

  results = run({n: tx.init(PARAMS) for n, tx in txs.items()},
                {n: tx.init(PARAMS) for n, tx in safe.items()})
  for name, (bad, good, skipped, notfinite, before, after) in results.items():
    assert not np.all(np.isfinite(bad)), name
    assert np.all(np.isfinite(good)), name  # the state did not absorb the NaN
    assert np.all(np.asarray(skipped) == 0) and int(notfinite) == 1, name
    # The state after the NaN step is the state before it, leaf for leaf (issue 20, item 5:
    # graddrop advanced its key and trimmed_mean its count).
    assert jax.tree.structure(before) == jax.tree.structure(after), name
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def _comparable(state):
  """``state`` with its PRNG keys as their raw data (so that leaves compare as arrays)."""
  def plain(x):
    if jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key):
      return jax.random.key_data(x)
    return x
  return jax.tree.map(plain, state)


def _float_hyperparameters(name: str) -> dict:
  return {hp: default for hp, default in cg.get_method(name).hyperparameters.items()
          if isinstance(default, float)}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in cg.method_names("gradient") if _float_hyperparameters(n)])
def test_every_float_hyperparameter_is_injectable_under_jit(name):
  """``optax.inject_hyperparams`` with every float hyperparameter traced, under ``jit``, gives
  the update of the plain factory with the same values (issue 20, item 6: FairGrad's alpha and
  the betas of MoCo, CR-MOGM, PCD and DB-MTL failed). The other hyperparameters (ints, strings,
  booleans, a weighting) choose shapes or code paths and are passed in ``static_args``."""
  method = cg.get_method(name)
  # Not the defaults, so that the injected values must be honoured (FairGrad: alpha = 1).
  values = {hp: 0.5 * v if v else 0.5 for hp, v in _float_hyperparameters(name).items()}
  params = inspect.signature(method.factory).parameters
  static = tuple(p for p in ("task_weights", "num_tasks", "key", *method.hyperparameters)
                 if p in params and p not in values)
  injected = optax.inject_hyperparams(method.factory, static_args=static)(**values, num_tasks=3)
  plain = method.factory(**values, num_tasks=3)
  extra = _extra(plain)
  g = {"w": G3["w"] * jnp.array([[1.0], [2.0], [0.5]])}
  out, state = jax.jit(lambda u, s: injected.update(u, s, PARAMS, **extra))(
      g, injected.init(PARAMS))
  want, _ = jax.jit(lambda u, s: plain.update(u, s, PARAMS, **extra))(g, plain.init(PARAMS))
  assert np.all(np.isfinite(want["w"])), name
  np.testing.assert_allclose(out["w"], want["w"], rtol=1e-5,
                             atol=1e-6 * float(np.linalg.norm(want["w"])), err_msg=name)
  for hp, value in values.items():
    assert float(state.hyperparams[hp]) == pytest.approx(value), hp


@pytest.mark.parametrize("name", ["uncertainty", "dwa", "famo"])
def test_a_nan_loss_does_not_poison_loss_weightings(name):
  lw = cg.make_method(name)
  state = lw.init(2)
  ref_state = state
  weights, state = lw.update(jnp.array([jnp.nan, 1.0]), state)
  assert np.all(np.isnan(weights))
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
    np.testing.assert_array_equal(a, b)  # the state did not move
  weights, _ = lw.update(jnp.array([1.0, 2.0]), state)
  assert np.all(np.isfinite(weights))


def test_famo_refuses_non_positive_losses_by_skipping():
  lw = cg.make_method("famo")
  weights, state = lw.update(jnp.array([-1.0, 2.0]), lw.init(2))
  assert np.all(np.isnan(weights))
  assert int(state.count) == 0


@pytest.mark.parametrize("scale", [1e19, 1e-21])
def test_gram_over_or_underflow_skips_the_step(scale):
  """Finite gradients whose Gram matrix leaves float32's range give a NaN update, not a wrong one."""
  g = {"w": jnp.array([[1.0, 2.0, 0.5], [1.0, -3.0, 0.1]]) * scale}
  tx = cg.came_grad()
  state = tx.init(PARAMS)
  out, new_state = jax.jit(tx.update)(g, state, PARAMS)
  assert np.all(np.isnan(out["w"]))
  assert int(new_state.count) == 0
  # In range, the same gradients give CAME-Grad's update (scaled): the guard does not fire.
  out1, _ = jax.jit(tx.update)({"w": g["w"] / scale}, state, PARAMS)
  assert np.all(np.isfinite(out1["w"]))


def test_exact_zero_task_gradient_is_not_an_underflow():
  g = {"w": jnp.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])}
  tx = cg.came_grad()
  out, state = jax.jit(tx.update)(g, tx.init(PARAMS), PARAMS)
  assert np.all(np.isfinite(out["w"])) and int(state.count) == 1


@pytest.mark.slow
def test_grad_through_the_dual_k3_raises_and_k2_matches_finite_differences():
  tx = cg.came_grad()
  state = tx.init(jnp.zeros(7))
  f = lambda g: jnp.sum(jnp.sin(tx.update(g, state, jnp.zeros(7))[0]))
  g3 = jax.random.normal(jax.random.key(5), (3, 7))
  with pytest.raises(NotImplementedError, match="K = 2"):
    jax.grad(f)(g3)
  with jax.enable_x64(True):
    g2 = np.asarray(jax.random.normal(jax.random.key(5), (2, 7)), np.float64)
    grad = np.asarray(jax.grad(f)(jnp.asarray(g2)))
    direction = np.random.default_rng(0).normal(size=g2.shape)
    eps = 1e-6
    fd = (f(jnp.asarray(g2 + eps * direction)) - f(jnp.asarray(g2 - eps * direction))) / (2 * eps)
    assert abs(float(fd) - np.sum(grad * direction)) <= 1e-5 * (1 + abs(float(fd)))


@pytest.mark.parametrize("bad, error, match", [
    ([], ValueError, "non-empty"),
    ([1j, 2.0], TypeError, "real numbers"),
    ("ab", TypeError, "task_weights"),
    ([True, False], TypeError, "real numbers"),
    ([1.0, -1.0], ValueError, ">= 0"),
    ([[1.0, 2.0]], ValueError, "vector"),
])
def test_task_weights_are_validated_at_construction(bad, error, match):
  with pytest.raises(error, match=match):
    cg.came_grad(task_weights=bad)


@pytest.mark.slow
def test_task_weights_are_copied():
  weights = [1.0, 4.0]
  tx = cg.came_grad(task_weights=weights)
  weights[1] = -5.0  # mutating the caller's list afterwards changes nothing
  out, _ = tx.update(G, tx.init(PARAMS))
  assert np.all(np.isfinite(out["w"]))
  np.testing.assert_allclose(np.asarray(tx.update(G, tx.init(PARAMS))[0]["w"]),
                             np.asarray(cg.came_grad(task_weights=[1.0, 4.0]).update(
                                 G, tx.init(PARAMS))[0]["w"]))


def test_num_tasks_accepts_numpy_ints_and_refuses_others():
  cg.came_grad(num_tasks=np.int64(2))
  for bad in (0, 2.5, True):
    with pytest.raises(ValueError, match="num_tasks"):
      cg.came_grad(num_tasks=bad)
  with pytest.raises(ValueError, match="K = 3"):
    cg.came_grad(num_tasks=3).update(G, cg.came_grad(num_tasks=3).init(PARAMS))


def test_keys_are_checked_where_they_are_passed():
  with pytest.raises(TypeError, match="key"):
    cg.pcgrad(key=1.5)
  with pytest.raises(ValueError, match="key"):
    cg.graddrop(key=-1)
  typed = cg.pcgrad(key=jax.random.key(3)).init(PARAMS)
  legacy = cg.pcgrad(key=jax.random.PRNGKey(3)).init(PARAMS)
  seeded = cg.pcgrad(key=3).init(PARAMS)
  for state in (typed, legacy):
    np.testing.assert_array_equal(jax.random.key_data(state.weighting_state.key),
                                  jax.random.key_data(seeded.weighting_state.key))


def test_params_shaped_updates_are_refused_when_params_are_given():
  tx = cg.came_grad()
  params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}
  with pytest.raises(ValueError, match="leading task axis"):
    tx.update({"a": jnp.ones(3), "b": jnp.ones(3)}, tx.init(params), params)


def test_value_and_task_grads_with_no_losses_is_a_clear_error():
  for vectorize in (True, False):
    with pytest.raises(ValueError, match="no losses"):
      cg.value_and_task_grads(lambda p: jnp.zeros((0,)) * p[0], vectorize=vectorize)(jnp.ones(2))


@pytest.mark.slow
def test_multisteps_goes_after_the_aggregation():
  """The supported placement: aggregate each micro-batch, then MultiSteps averages the updates.

  ``MultiSteps(chain(came_grad, adamw))`` cannot work (its accumulator is
  params-shaped while the inputs are stacked); the error says where to put it.
  """
  every = 3
  tx = optax.chain(cg.came_grad(), optax.MultiSteps(optax.sgd(1.0), every))
  state = tx.init(PARAMS)
  params = PARAMS
  batches = [G, {"w": G["w"] * 2.0}, {"w": -G["w"][::-1]}]
  for g in batches:
    updates, state = jax.jit(tx.update)(g, state, params)
    params = optax.apply_updates(params, updates)
  single = cg.came_grad()
  want = -sum(single.update(g, single.init(PARAMS))[0]["w"] for g in batches) / every
  np.testing.assert_allclose(params["w"], want, rtol=1e-5, atol=1e-6 * float(jnp.abs(want).max()))
  wrong = optax.MultiSteps(optax.chain(cg.came_grad(), optax.sgd(1.0)), every)
  with pytest.raises(ValueError, match="MultiSteps"):
    wrong.update(G, wrong.init(PARAMS), PARAMS)


@pytest.mark.parametrize("rescale", ["abc", float("nan"), -1.0, 1])
def test_cagrad_rescale_must_be_a_bool(rescale):
  """Issue 20, item 9: ``cagrad(rescale='abc')`` (and nan, -1.0) were accepted."""
  with pytest.raises(TypeError, match="rescale"):
    cg.cagrad(rescale=rescale)
  with pytest.raises(TypeError, match="rescale"):
    cg.weightings.cagrad(0.4, rescale=rescale)
  cg.cagrad(rescale=np.bool_(False))


@pytest.mark.parametrize("name", ["famo", "uncertainty"])
def test_loss_weighting_optimizer_is_checked_at_construction(name):
  """Issue 20, item 9: ``famo(optimizer='abc')`` failed only at ``init``, with AttributeError."""
  with pytest.raises(TypeError, match="optimizer"):
    cg.get_method(name).factory(optimizer="abc")
  lw = cg.get_method(name).factory(optimizer=optax.sgd(0.1))
  weights, _ = lw.update(jnp.array([1.0, 2.0]), lw.init(2))
  assert np.all(np.isfinite(weights))


def _grad_names_the_method(name: str, message: str) -> bool:
  title = cg.get_method(name).title.split()[0]
  return title in message


@pytest.mark.slow
@pytest.mark.parametrize("name", cg.method_names("gradient"))
def test_jax_grad_is_right_or_a_clear_error(name):
  """``jax.grad`` through every method's update, K = 3, at a generic point and with one zero
  task gradient: either finite and equal to central differences (float64), or a
  ``NotImplementedError`` that names the method (issue 20, items 7 and 8: GradVac was NaN
  everywhere, IMTL-G, ConFIG and DB-MTL at a zero task gradient; the while_loop methods raised
  JAX's raw reverse-mode error)."""
  with jax.enable_x64(True):
    tx = cg.make_method(name, num_tasks=3)
    params = jnp.zeros(5)
    extra = {"losses": jnp.array([1.0, 0.5, 2.0])} if name == "gradnorm" else {}
    state = tx.init(params)

    def f(g):
      return jnp.sum(jnp.sin(tx.update(g, state, params, **extra)[0]))

    rng = np.random.default_rng(7)
    generic = rng.normal(size=(3, 5))
    one_zero = generic.copy()
    one_zero[1] = 0.0
    try:
      grad_f = jax.jit(jax.grad(f))
      grads = [np.asarray(grad_f(jnp.asarray(g))) for g in (generic, one_zero)]
    except NotImplementedError as e:
      assert _grad_names_the_method(name, str(e)), str(e)
      assert "stop_gradient" in str(e)
      return
    f_jit = jax.jit(f)
    for g, grad in zip((generic, one_zero), grads):
      assert np.all(np.isfinite(grad)), name
      direction = rng.normal(size=g.shape)
      direction[np.all(g == 0, axis=1)] = 0.0  # along the other tasks: smooth there
      eps = 1e-6
      fd = (float(f_jit(jnp.asarray(g + eps * direction)))
            - float(f_jit(jnp.asarray(g - eps * direction)))) / (2 * eps)
      assert abs(fd - np.sum(grad * direction)) <= 1e-5 * (1 + abs(fd)), name
