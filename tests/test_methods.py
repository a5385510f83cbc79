"""The transformation factories, and the property table of docs/methods.md checked numerically."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import came_grad_jax as cg

TABLE = pathlib.Path(__file__).parents[1] / "docs" / "methods.md"
TASK_WEIGHTS = np.array([1.0, 2.0, 0.5])


def table_rows() -> list[dict]:
  """The rows of the methods table as {column: cell}, backticks stripped."""
  lines = [line for line in TABLE.read_text().splitlines() if line.startswith("| ")]
  header = [cell.strip() for cell in lines[0].strip("|").split("|")]
  rows = [[cell.strip().replace("`", "") for cell in line.strip("|").split("|")]
          for line in lines[2:]]
  return [dict(zip(header, row)) for row in rows]


GRADIENT_ROWS = [row for row in table_rows() if row["Non-conflicting"] != "n/a"]


def factory_of(row: dict):
  return getattr(cg, re.match(r"[a-z_0-9]+", row["Factory"]).group())


def battery(seed: int = 0, size: int = 16) -> np.ndarray:
  """(2 * size, K=3, P=5) gradients: conflicting, unequal scales; the second half rescaled per task."""
  rng = np.random.default_rng(seed)
  g = (rng.normal(size=(size, 3, 5)) + rng.normal(size=(size, 1, 1)) * rng.normal(size=(size, 1, 5)))
  g *= np.exp(1.5 * rng.normal(size=(size, 3, 1)))
  return np.concatenate([g, g * np.exp(rng.normal(size=(size, 3, 1)))])


def updates_on_battery(txs: dict, g: np.ndarray) -> dict:
  """Each transformation's updates for every gradient set of the battery, from one initial state.

  One jitted function for all of them (vmapped over the battery): compiling
  them together is several times faster than one by one.
  """
  states = {name: tx.init(jnp.zeros(g.shape[2])) for name, tx in txs.items()}

  @jax.jit
  def run(g, states):
    return {name: jax.vmap(tx.update, in_axes=(0, None))(g, states[name])[0]
            for name, tx in txs.items()}

  with jax.enable_x64(True):
    return {name: np.asarray(d) for name, d in run(jnp.asarray(g), states).items()}


@pytest.fixture(scope="module")
def table_updates():
  """``(g, {method: d})`` for every row of the table, on the battery, with TASK_WEIGHTS."""
  with jax.enable_x64(True):
    txs = {row["Method"]: factory_of(row)(task_weights=TASK_WEIGHTS) for row in GRADIENT_ROWS}
    g = battery()
    return g, updates_on_battery(txs, g)


@pytest.mark.parametrize("row", GRADIENT_ROWS, ids=lambda row: row["Method"])
def test_table_properties_hold(table_updates, row):
  g, updates = table_updates
  d = updates[row["Method"]]
  h = g * TASK_WEIGHTS[:, None]  # the task-weighted gradients the properties are about
  norms = np.linalg.norm(h, axis=2)
  conflict = np.max(-np.einsum("bkp,bp->bk", h, d) / (norms * np.linalg.norm(d, axis=1)[:, None]
                                                       + 1e-300), axis=1)
  half = len(g) // 2
  cosine = np.einsum("bp,bp->b", d[:half], d[half:]) / (
      np.linalg.norm(d[:half], axis=1) * np.linalg.norm(d[half:], axis=1) + 1e-300)

  claims_non_conflicting = row["Non-conflicting"] == "yes"
  assert (conflict.max() <= 1e-10) == claims_non_conflicting, conflict.max()
  invariant = np.all(1 - cosine <= 1e-9)
  assert invariant == row["Invariant to task-loss scaling"].startswith("yes"), cosine.min()
  state = factory_of(row)(task_weights=TASK_WEIGHTS).init(jnp.zeros(5))
  has_key = hasattr(getattr(state, "weighting_state", state), "key")
  assert has_key == (row["Randomness"] == "yes")


def test_pcgrad_is_non_conflicting_for_two_tasks(x64):
  g = battery()[:, :2]
  d = updates_on_battery({"PCGrad": cg.pcgrad(num_tasks=2)}, g)["PCGrad"]
  inner = np.einsum("bkp,bp->bk", g, d)
  assert inner.min() >= -1e-12 * np.abs(g).sum()


def test_every_factory_is_in_the_table():
  listed = {factory_of(row).__name__ for row in GRADIENT_ROWS}
  assert listed == {"linear_scalarization", "mgda", "pcgrad", "cagrad", "upgrad", "dualproj",
                    "imtl_g", "aligned_mtl", "nash_mtl", "gradvac", "graddrop", "came_grad",
                    "came_s1", "came_s1_s2", "came_s1_s3"}


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
  tx = optax.chain(cg.pcgrad(seed=3, num_tasks=2), optax.sgd(0.1))
  params = jnp.zeros(4)
  state = tx.init(params)
  step = jax.jit(tx.update)
  keys = []
  for _ in range(3):
    updates, state = step(jnp.asarray([[1.0, 0.0, 1.0, 0.0], [-1.0, 1.0, 0.0, 0.0]]), state)
    params = optax.apply_updates(params, updates)
    keys.append(np.asarray(state[0].weighting_state.key))
  assert len({k.tobytes() for k in keys}) == 3
  assert np.all(np.isfinite(params))


def test_number_of_tasks_is_required():
  with pytest.raises(ValueError, match="num_tasks"):
    cg.mgda()
