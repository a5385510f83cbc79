"""The registry of methods and the property claims of its entries, checked numerically."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import came_grad_jax as cg
from tests.tiers import grid

TASK_WEIGHTS = np.array([1.0, 2.0, 0.5])
GRADIENT_METHODS = cg.method_names("gradient")


def battery(seed: int = 0, size: int = 16) -> np.ndarray:
  """(2 * size, K=3, P=5) gradients: conflicting, unequal scales; the second half rescaled per task."""
  rng = np.random.default_rng(seed)
  g = (rng.normal(size=(size, 3, 5)) + rng.normal(size=(size, 1, 1)) * rng.normal(size=(size, 1, 5)))
  g *= np.exp(1.5 * rng.normal(size=(size, 3, 1)))
  return np.concatenate([g, g * np.exp(rng.normal(size=(size, 3, 1)))])


def extra_args(tx) -> dict:
  """The task losses for transformations that take extra arguments (GradNorm), else nothing."""
  if isinstance(tx, optax.GradientTransformationExtraArgs):
    return {"losses": jnp.array([1.0, 0.5, 2.0])}
  return {}


def updates_on_battery(tx, g: np.ndarray, warm_up: bool = False) -> np.ndarray:
  """The transformation's updates for every gradient set of the battery, from one state.

  With ``warm_up`` the state is the one after a first step on other gradients,
  so that stateful methods (EMAs, tracked gradients, moving weights) are
  checked past their first step, which is often a plain method. One compiled
  step per method serves the warm-up and every gradient set (an eager warm-up
  costs more than compiling, a vmapped battery a second program), and a
  program per method lets the test workers share the registry.
  """
  step = jax.jit(lambda x, s: tx.update(x, s, **extra_args(tx)))
  with jax.enable_x64(True):
    state = tx.init(jnp.zeros(g.shape[2]))
    if warm_up:
      state = step(jnp.asarray(battery(seed=99, size=1)[0, :g.shape[1]]), state)[1]
    return np.stack([np.asarray(step(x, state)[0]) for x in jnp.asarray(g)])


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_registry_properties_hold(name):
  method = cg.get_method(name)
  with jax.enable_x64(True):
    g = battery()
    d = updates_on_battery(cg.make_method(name, task_weights=TASK_WEIGHTS), g, warm_up=True)
  h = g * TASK_WEIGHTS[:, None]  # the task-weighted gradients the properties are about
  norms = np.linalg.norm(h, axis=2)
  conflict = np.max(-np.einsum("bkp,bp->bk", h, d) / (norms * np.linalg.norm(d, axis=1)[:, None]
                                                       + 1e-300), axis=1)
  half = len(g) // 2
  cosine = np.einsum("bp,bp->b", d[:half], d[half:]) / (
      np.linalg.norm(d[:half], axis=1) * np.linalg.norm(d[half:], axis=1) + 1e-300)

  # "yes" and "no" are checked on the battery; a qualified claim ("no (yes for K = 2)")
  # by the method's own tests.
  if method.non_conflicting in ("yes", "no"):
    assert (conflict.max() <= 1e-10) == (method.non_conflicting == "yes"), conflict.max()
  invariant = np.all(1 - cosine <= 1e-9)
  assert invariant == method.scale_invariant.startswith("yes"), cosine.min()
  state = cg.make_method(name, task_weights=TASK_WEIGHTS).init(jnp.zeros(5))
  has_key = hasattr(getattr(state, "weighting_state", state), "key")
  assert has_key == method.randomized


def test_registry_names_every_public_factory():
  factories = {cg.get_method(n).factory.__name__ for n in cg.method_names()}
  assert factories == {"linear_scalarization", "mgda", "pcgrad", "cagrad", "upgrad", "dualproj",
                       "imtl_g", "aligned_mtl", "nash_mtl", "gradvac", "graddrop", "came_grad",
                       "came_s1", "came_s1_s2", "came_s1_s3", "uncertainty_weighting", "dwa",
                       "famo", "config", "fairgrad", "sdmgrad", "modo", "moco", "cr_mogm",
                       "krum", "pcd", "trimmed_mean", "db_mtl", "excess_mtl", "gradnorm", "rlw",
                       "gls", "stch"}
  for name in cg.method_names():
    method = cg.get_method(name)
    assert method.url.startswith("https://"), name
    assert getattr(cg, method.factory.__name__, None) is method.factory or method.kind == "loss"


def test_registry_errors_name_the_problem():
  with pytest.raises(ValueError, match="unknown method 'nope'"):
    cg.get_method("nope")
  with pytest.raises(ValueError, match="takes no hyperparameter"):
    cg.make_method("came", c=0.4)
  with pytest.raises(ValueError, match="already registered"):
    cg.register(cg.get_method("came"))
  with pytest.raises(ValueError, match="kind must be"):
    cg.method_names("gram")


def test_make_method_applies_hyperparameters(x64):
  gram = np.array([[1.0, -0.6], [-0.6, 2.0]])
  g = {"w": jnp.asarray(np.linalg.cholesky(gram))}
  tx = cg.make_method("came", rho=0.0, kappa=1.0, nu=0.0)
  out, _ = tx.update(g, tx.init({"w": jnp.zeros(2)}))
  # rho = 0, kappa = 1, nu = 0 gives g_joint for any K (docs/design.md).
  np.testing.assert_allclose(out["w"], np.asarray(g["w"]).sum(0), rtol=1e-12)
  assert cg.make_method("famo").init(2).logits.shape == (2,)


def test_methods_table_has_a_row_per_method():
  rows = [line for line in cg.methods_table().splitlines()[2:]]
  assert len(rows) == len(cg.method_names())
  assert all(f"`{n}`" in row for n, row in zip(cg.method_names(), rows))


def test_pcgrad_is_non_conflicting_for_two_tasks(x64):
  g = battery()[:, :2]
  d = updates_on_battery(cg.pcgrad(num_tasks=2), g)
  inner = np.einsum("bkp,bp->bk", g, d)
  assert inner.min() >= -1e-12 * np.abs(g).sum()


@pytest.mark.parametrize("jit", [True, False])
def test_update_is_the_weighting_on_a_pytree(x64, jit):
  """``update = sum_k c_k w_k g_k`` leaf by leaf, c the weighting's for ``h_k = w_k g_k``."""
  rng = np.random.default_rng(1)
  grads = {"w": jnp.asarray(rng.normal(size=(3, 4, 2))), "b": jnp.asarray(rng.normal(size=(3, 5)))}
  flat = np.concatenate([np.asarray(x).reshape(3, -1) for x in grads.values()], axis=1)
  h = flat * TASK_WEIGHTS[:, None]
  tx = cg.aligned_mtl("min", TASK_WEIGHTS)
  out, state = (jax.jit(tx.update) if jit else tx.update)(grads, tx.init(grads))
  c = np.asarray(cg.weightings.aligned_mtl("min")(jnp.asarray(h @ h.T)))
  np.testing.assert_allclose(state.diagnostics.coefficients, c, rtol=1e-12)
  for name, leaf in grads.items():
    want = np.tensordot(c * TASK_WEIGHTS, np.asarray(leaf), axes=1)
    np.testing.assert_allclose(out[name], want, rtol=1e-12)


def test_chains_with_an_optimizer_and_carries_the_key(x64):
  tx = optax.chain(cg.pcgrad(key=3), optax.sgd(0.1))
  params = jnp.zeros(4)
  state = tx.init(params)
  step = jax.jit(tx.update)
  keys = []
  for _ in range(3):
    updates, state = step(jnp.asarray([[1.0, 0.0, 1.0, 0.0], [-1.0, 1.0, 0.0, 0.0]]), state)
    params = optax.apply_updates(params, updates)
    keys.append(np.asarray(jax.random.key_data(state[0].weighting_state.key)))
  assert len({k.tobytes() for k in keys}) == 3
  assert np.all(np.isfinite(params))


@pytest.mark.parametrize("name", grid([n for n in GRADIENT_METHODS
                                       if not cg.get_method(n).needs_num_tasks],
                                      fast=["came"]))
def test_factories_need_no_number_of_tasks_under_jit(name):
  """K comes from the updates' leading axis; scalar diagnostics are kept, K-shaped ones not."""
  tx = cg.make_method(name)
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  g = {"w": jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, -1.0, 1.0]])}
  out, state = jax.jit(tx.update)(g, state, params)
  assert out["w"].shape == (3,) and np.all(np.isfinite(out["w"]))
  diagnostics = getattr(state, "diagnostics", None)
  if diagnostics is not None:
    assert diagnostics.cosine is None and diagnostics.coefficients is None
    assert np.isfinite(float(diagnostics.drift_deg))


def test_methods_whose_state_needs_k_say_so():
  for name in GRADIENT_METHODS:
    if cg.get_method(name).needs_num_tasks:
      with pytest.raises(ValueError, match="num_tasks"):
        cg.make_method(name)
      cg.make_method(name, num_tasks=3)  # and work once K is given
