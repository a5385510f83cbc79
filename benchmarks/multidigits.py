"""MultiDigits: every method of the registry on two overlapping real digits, with Δm.

A small shared CNN (Flax NNX) reads a two-digit image (:mod:`benchmarks.multidigits_data`)
and two heads classify the left and the right digit: two tasks, K = 2. Every method of
the library's one registry is trained on it, with the same data, budget, optimizer
(Adam) and initialisations:

* gradient methods (``cg.method_names("gradient")``): per-task gradients from
  ``cg.value_and_task_grads`` (a backward pass per task), then
  ``optax.chain(cg.make_method(name, num_tasks=2, key=seed), optax.adam(lr))``;
* loss weightings (``cg.method_names("loss")``): ``weights, state = lw.update(losses, state)``
  each step and one backward pass of ``sum_k weights_k L_k``;
* ``ls_one_pass``, a timing reference outside the registry: linear scalarization as one
  backward pass of ``L_1 + L_2`` (the registry's ``ls`` takes the per-task path).

Reported: test accuracy per task (mean ± sample std over seeds), Δm% against LS as
LibMTL and Nash-MTL define it, ``Δm = 100 / K sum_k (-1)^{l_k} (M_m,k - M_LS,k) / M_LS,k``
(``l_k = 0``: accuracy, higher is better) from the means over seeds, with the sample std
of the same quantity paired by seed; the mean rank over tasks; and the step time against
LS measured in the same run. Training is one compiled ``lax.scan`` per epoch (compiled
ahead of time, compilation timed apart); the methods take their epochs in turn (the order
rotating every epoch), so each round times every method under the same machine load, and
a method's step-time ratio is the median over rounds of its epoch time over LS's.

Run: ``python -m benchmarks.multidigits`` (3 seeds; ``--full``: 5 seeds, more data and
epochs; ``--tiny``: the CI smoke size). Writes ``<out>/multidigits.json``, ``table.md``
and ``multidigits.png`` (default ``runs/multidigits``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

import came_grad_jax as cg
from benchmarks import common
from benchmarks.multidigits_data import MultiDigits, make_multidigits

#: The baseline of Δm and of the time ratios (the registry's linear scalarization).
BASELINE = "ls"
#: Timing reference outside the registry: LS as one backward pass of the summed losses.
ONE_PASS = "ls_one_pass"
TASKS = ("left", "right")
#: Single-task models (the Δm baseline of Maninis et al. and Nash-MTL): the same network,
#: data, budget and optimizer, trained on one task's loss alone (one backward pass).
SINGLE_TASK = tuple(f"stl_{t}" for t in TASKS)
#: Names outside the registry that the benchmark trains.
EXTRA = (ONE_PASS,) + SINGLE_TASK


@dataclasses.dataclass(frozen=True)
class Config:
  """One benchmark setting (``--tiny``, the default, ``--full``)."""

  num_train: int = 1500
  num_test: int = 1000
  epochs: int = 4
  batch_size: int = 32
  learning_rate: float = 2e-3
  seeds: tuple[int, ...] = (0, 1, 2)
  data_seed: int = 0
  width: int = 8
  """Channels of the first convolution (the second has twice as many)."""
  hidden: int = 32
  """Width of the shared dense layer before the two heads."""


TINY = Config(num_train=256, num_test=128, epochs=2, batch_size=32, seeds=(0, 1), width=4,
              hidden=16)
DEFAULT = Config()
FULL = Config(num_train=6000, num_test=2000, epochs=10, batch_size=64, seeds=(0, 1, 2, 3, 4),
              width=16, hidden=64)


# ------------------------------------------------------------------------------------------------
# Model and losses
# ------------------------------------------------------------------------------------------------
class SharedCNN(nnx.Module):
  """Two convolutions and a dense layer shared by the tasks, one linear head per digit."""

  def __init__(self, width: int, hidden: int, canvas: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, width, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(width, 2 * width, (3, 3), strides=(2, 2), rngs=rngs)
    side = -(-canvas // 2)  # SAME padding, stride 2
    self.dense = nnx.Linear(side * side * 2 * width, hidden, rngs=rngs)
    self.left = nnx.Linear(hidden, 10, rngs=rngs)
    self.right = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``images (B, H, W, 1)`` -> the left and right digits' logits, each ``(B, 10)``."""
    z = nnx.relu(self.conv1(images))
    z = nnx.relu(self.conv2(z))
    z = nnx.relu(self.dense(z.reshape(z.shape[0], -1)))
    return self.left(z), self.right(z)


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


Apply = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@functools.cache
def _initializer(width: int, hidden: int, canvas: int) -> tuple[Callable, Apply]:
  """``(init(key) -> flat params, apply)`` of one model shape, compiled once per process."""

  def build(key):
    return nnx.split(SharedCNN(width, hidden, canvas, rngs=nnx.Rngs(key)), nnx.Param)

  # One compiled initialisation for every seed, instead of an eager one compiled op by op.
  init = jax.jit(lambda key: ravel_pytree(build(key)[1])[0])
  graphdef, shapes = nnx.eval_shape(lambda: build(jax.random.key(0)))
  _, unravel = ravel_pytree(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))

  def apply(params, images):
    return nnx.merge(graphdef, unravel(params))(images)

  return init, apply


def flat_model(config: Config, canvas: int, seed: int) -> tuple[Apply, jax.Array]:
  """``(apply, params)``: the seed's :class:`SharedCNN` with its parameters as one flat vector.

  ``apply(params, images)`` gives the two heads' logits. One (P,) vector instead of the
  model's 10 leaves: the same optimisation (Adam is elementwise, the methods see the
  same Gram matrix) with ten times fewer kernels for XLA to compile per method. The
  parameters are those of ``SharedCNN(..., rngs=nnx.Rngs(seed))``.
  """
  init, apply = _initializer(config.width, config.hidden, canvas)
  return apply, init(jax.random.key(seed))  # the key nnx.Rngs(seed) draws from


def make_losses(apply: Apply) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """``losses(params, images, labels) -> (L_left, L_right)``, a tuple of scalars.

  As a tuple, ``cg.value_and_task_grads(..., vectorize=False)`` runs each task's
  backward pass through its own head only.
  """

  def losses(params, images, labels):
    left, right = apply(params, images)
    return _cross_entropy(left, labels[:, 0]), _cross_entropy(right, labels[:, 1])

  return losses


# ------------------------------------------------------------------------------------------------
# Methods: one compiled epoch each
# ------------------------------------------------------------------------------------------------
def default_methods() -> tuple[str, ...]:
  """Every method of the registry: the gradient methods, then the loss weightings."""
  return cg.method_names("gradient") + cg.method_names("loss")


def _build(name: str, seed: int):
  """The registry's method ``name`` for K = 2 and PRNG key ``seed`` (``None`` for :data:`EXTRA`)."""
  if name in EXTRA:
    return None
  return cg.make_method(name, num_tasks=len(TASKS), key=seed)


def _kind(name: str) -> str:
  if name in SINGLE_TASK:
    return "single-task"
  return "loss" if name == ONE_PASS else cg.get_method(name).kind


def _fixed_weights(name: str) -> np.ndarray:
  """The loss weights of :data:`ONE_PASS` (all ones) or a single-task model (one-hot)."""
  if name in SINGLE_TASK:
    return np.eye(len(TASKS), dtype=np.float32)[SINGLE_TASK.index(name)]
  return np.ones(len(TASKS), np.float32)


@dataclasses.dataclass
class Trainer:
  """A method's epoch function (``state, data, batches -> state, mean losses``) and its init."""

  name: str
  kind: str
  epoch: Callable[..., Any]
  init: Callable[[Any, int], Any]
  """``(params, seed) -> (params, optimizer state, loss-weighting state)``."""
  per_seed: bool
  """The method keeps its key outside the state: the epoch is rebuilt for every seed."""


def _epoch_fn(name: str, method: Any, losses_fn: Callable, adam: optax.GradientTransformation):
  """The scan over one epoch's batches of ``method``'s train step."""
  kind = _kind(name)
  if kind == "gradient":
    tx = optax.chain(method, adam)
    task_grads = cg.value_and_task_grads(losses_fn, vectorize=False)

    def step(carry, images, labels):
      params, opt_state, lw_state = carry
      losses, grads = task_grads(params, images, labels)
      # Methods that read the losses (GradNorm) take them as an extra
      # argument; optax.chain drops it for the others.
      updates, opt_state = tx.update(grads, opt_state, params, losses=jnp.stack(losses))
      return (optax.apply_updates(params, updates), opt_state, lw_state), losses
  else:
    def step(carry, images, labels):
      params, opt_state, lw_state = carry

      def objective(p):
        losses = jnp.stack(losses_fn(p, images, labels))
        if method is None:  # ONE_PASS (plain LS) or a single-task model (one-hot)
          weights, new_state = jnp.asarray(_fixed_weights(name)), lw_state
        else:
          weights, new_state = method.update(losses, lw_state)
        return jnp.sum(jax.lax.stop_gradient(weights) * losses), (losses, new_state)

      (_, (losses, lw_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
      updates, opt_state = adam.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state, lw_state), losses

  def epoch(state, images, labels, batches):
    def body(carry, idx):
      return step(carry, images[idx], labels[idx])
    state, losses = jax.lax.scan(body, state, batches)
    return state, losses.mean(axis=0)

  return epoch


def _init_fn(name: str, adam: optax.GradientTransformation) -> Callable[[Any, int], Any]:
  def init(params, seed):
    method = _build(name, seed)
    if _kind(name) == "gradient":
      return params, optax.chain(method, adam).init(params), ()
    lw_state = () if method is None else method.init(len(TASKS))
    return params, adam.init(params), lw_state
  return init


def _key_in_state(name: str, params: Any, adam: optax.GradientTransformation) -> bool:
  """Whether a randomized method's seed changes its initial state (so one epoch fits all)."""
  if name in EXTRA or not cg.get_method(name).randomized:
    return True
  init = _init_fn(name, adam)
  a, b = (jax.tree.leaves(jax.tree.map(
      lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
      else x, init(params, s))) for s in (0, 1))
  return any(not np.array_equal(x, y) for x, y in zip(a, b))


def make_trainer(name: str, apply: Apply, params: jax.Array, learning_rate: float) -> Trainer:
  """The :class:`Trainer` of ``name`` (a registry method or :data:`ONE_PASS`).

  Raises:
    ValueError: ``name`` is neither in ``cg.method_names()`` nor :data:`ONE_PASS`.
  """
  if name not in EXTRA and name not in cg.method_names():
    raise ValueError(f"unknown method {name!r}; expected one of {cg.method_names()} or "
                     f"{EXTRA}")
  adam = optax.adam(learning_rate)
  losses_fn = make_losses(apply)
  per_seed = not _key_in_state(name, params, adam)
  epoch = _epoch_fn(name, _build(name, 0), losses_fn, adam)
  return Trainer(name, _kind(name), epoch, _init_fn(name, adam), per_seed)


def make_evaluate(apply: Apply) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """``evaluate(params, images, labels) -> (accuracy (2,), loss (2,))``, jit-compiled."""

  @jax.jit
  def evaluate(params, images, labels):
    logits = apply(params, images)
    acc = jnp.stack([jnp.mean(jnp.argmax(l, -1) == labels[:, k]) for k, l in enumerate(logits)])
    loss = jnp.stack([_cross_entropy(l, labels[:, k]) for k, l in enumerate(logits)])
    return acc, loss

  return evaluate


# ------------------------------------------------------------------------------------------------
# Summaries: Δm, ranks, time ratios
# ------------------------------------------------------------------------------------------------
def delta_m(metrics: np.ndarray, baseline: np.ndarray,
            lower_is_better: Sequence[bool] | None = None) -> np.ndarray:
  """Δm% of ``metrics`` against ``baseline`` (LibMTL, Nash-MTL): ``100 mean_k ±(M_k - B_k) / B_k``.

  Args:
    metrics: ``(..., K)`` a method's metric per task.
    baseline: ``(..., K)`` the baseline's, broadcastable to ``metrics``.
    lower_is_better: per task, whether a smaller metric is better (the ``(-1)^{l_k}``);
      default: higher is better for every task (accuracies).

  Returns:
    ``(...)`` Δm in percent; positive is better than the baseline.

  Raises:
    ValueError: a baseline of 0 or a ``lower_is_better`` of the wrong length.

  Example:
    >>> float(delta_m(np.array([0.9, 0.8]), np.array([0.8, 0.8])))
    6.25
  """
  metrics, baseline = np.asarray(metrics, np.float64), np.asarray(baseline, np.float64)
  k = metrics.shape[-1]
  lower = np.zeros(k, bool) if lower_is_better is None else np.asarray(lower_is_better, bool)
  if lower.shape != (k,):
    raise ValueError(f"lower_is_better must have one entry per task ({k}), got {lower.shape}")
  if np.any(baseline == 0):
    raise ValueError("baseline has a metric of 0: Δm divides by it")
  sign = np.where(lower, -1.0, 1.0)
  return 100.0 * np.mean(sign * (metrics - baseline) / baseline, axis=-1)


def mean_rank(means: np.ndarray) -> np.ndarray:
  """Mean over tasks of each method's rank (1 = best, ties share their mean rank).

  Args:
    means: ``(M, K)`` a metric per method and task, higher is better.

  Example:
    >>> mean_rank(np.array([[0.9, 0.5], [0.8, 0.7], [0.8, 0.6]]))
    array([2.  , 1.75, 2.25])
  """
  means = np.asarray(means, np.float64)
  ranks = np.empty_like(means)
  for k in range(means.shape[1]):
    col = means[:, k]
    better = (col[None, :] > col[:, None]).sum(axis=1)
    ties = (col[None, :] == col[:, None]).sum(axis=1)
    ranks[:, k] = better + (ties + 1) / 2
  return ranks.mean(axis=1)


def _mean_std(x: np.ndarray) -> tuple[Any, Any]:
  """Mean and sample std (ddof=1; None for one seed) over the leading (seed) axis, as lists."""
  x = np.asarray(x, np.float64)
  std = x.std(axis=0, ddof=1).tolist() if x.shape[0] > 1 else None
  return x.mean(axis=0).tolist(), std


def summarize(results: dict[str, Any], methods: Sequence[str]) -> list[dict[str, Any]]:
  """One row per method: accuracies (mean, std), Δm (from the means; paired std), rank, times."""
  acc = {m: np.array([results["runs"][m][str(s)]["test_accuracy"] for s in results["seeds"]])
         for m in methods}
  base = acc[BASELINE]
  # Single-task baseline, per seed: task k's accuracy of the model trained on task k alone.
  stl = None
  if all(t in acc for t in SINGLE_TASK):
    stl = np.stack([acc[t][:, k] for k, t in enumerate(SINGLE_TASK)], axis=-1)
  ranked = [m for m in methods if m not in EXTRA]
  ranks = dict(zip(ranked, mean_rank(np.stack([acc[m].mean(axis=0) for m in ranked]))))
  rows = []
  for m in methods:
    a_mean, a_std = _mean_std(acc[m])
    _, dm_std = _mean_std(delta_m(acc[m], base))  # per seed, against LS of the same seed
    times = results["times"][m]
    row = {"method": m, "kind": _kind(m), "accuracy": a_mean, "accuracy_std": a_std,
           "delta_m": float(delta_m(acc[m].mean(axis=0), base.mean(axis=0))),
           "delta_m_paired_std": dm_std,
           "mean_rank": None if m not in ranks else float(ranks[m]),
           "step_ms": times["step_ms"], "time_ratio": times["ratio_to_ls"],
           "compile_s": times["compile_s"]}
    if stl is not None and m not in SINGLE_TASK:
      per_seed = delta_m(acc[m], stl)  # against the single-task models of the same seed
      _, stl_std = _mean_std(per_seed)
      diff = per_seed - delta_m(base, stl)  # minus LS's, seed by seed
      diff_mean, diff_std = _mean_std(diff)
      row.update({"delta_m_stl": float(delta_m(acc[m].mean(axis=0), stl.mean(axis=0))),
                  "delta_m_stl_per_seed": per_seed.tolist(), "delta_m_stl_std": stl_std,
                  "minus_ls": diff_mean, "minus_ls_paired_std": diff_std,
                  "within_one_std_of_ls": None if diff_std is None else bool(
                      abs(diff_mean) <= diff_std)})
    rows.append(row)
  return rows


def _ratio_rows(epoch_times: dict[str, list[float]], steps: int, skip: int
                ) -> dict[str, dict[str, float]]:
  """Median step time and median per-round ratio to LS (the first ``skip`` rounds left out)."""
  base = np.asarray(epoch_times[BASELINE][skip:])
  return {m: {"step_ms": float(np.median(t[skip:]) / steps * 1e3),
              "ratio_to_ls": float(np.median(np.asarray(t[skip:]) / base))}
          for m, t in epoch_times.items()}


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """The README table: accuracy per task, Δm, mean rank, step time (sorted by Δm)."""
  def pm(mean, std, scale=100.0):
    return f"{scale * mean:.2f}" + ("" if std is None else f" ± {scale * std:.2f}")

  if any("delta_m_stl" in r for r in rows):
    return _stl_table(rows, pm)
  out = ["| method | kind | left acc. (%) | right acc. (%) | Δm% vs LS | mean rank | "
         "step time / LS | step ms |", "|---|---|---:|---:|---:|---:|---:|---:|"]
  for r in sorted(rows, key=lambda r: -r["delta_m"]):
    std = r["accuracy_std"] or (None, None)
    rank = "-" if r["mean_rank"] is None else f"{r['mean_rank']:.1f}"
    out.append(f"| {_title(r['method'])} | {r['kind']} | {pm(r['accuracy'][0], std[0])} | "
               f"{pm(r['accuracy'][1], std[1])} | {pm(r['delta_m'], r['delta_m_paired_std'], 1.0)}"
               f" | {rank} | {r['time_ratio']:.2f} | {r['step_ms']:.2f} |")
  return "\n".join(out)


def _title(name: str) -> str:
  return name if name in EXTRA else f"{cg.get_method(name).title} (`{name}`)"


def _stl_table(rows: Sequence[dict[str, Any]], pm) -> str:
  """Δm% against the single-task models, and each row's paired difference to LS's Δm."""
  out = ["| method | kind | left acc. (%) | right acc. (%) | Δm% vs single-task | "
         "Δm - LS's Δm (paired) | within 1 paired std of LS | mean rank | step time / LS | "
         "step ms |", "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
  for r in sorted(rows, key=lambda r: -r.get("delta_m_stl", -np.inf)):
    std = r["accuracy_std"] or (None, None)
    rank = "-" if r["mean_rank"] is None else f"{r['mean_rank']:.1f}"
    cells = [pm(r["accuracy"][k], std[k]) for k in range(len(TASKS))]
    if r["method"] in SINGLE_TASK:  # the other head is never trained
      cells = [c if k == SINGLE_TASK.index(r["method"]) else "-" for k, c in enumerate(cells)]
      dm, diff, within = "(baseline)", "-", "-"
    else:
      dm = pm(r["delta_m_stl"], r["delta_m_stl_std"], 1.0)
      diff = "0 (LS)" if r["method"] == BASELINE else pm(r["minus_ls"], r["minus_ls_paired_std"], 1.0)
      within = "-" if r["method"] == BASELINE or r["within_one_std_of_ls"] is None else (
          "yes" if r["within_one_std_of_ls"] else "**no**")
    out.append(f"| {_title(r['method'])} | {r['kind']} | {cells[0]} | {cells[1]} | {dm} | "
               f"{diff} | {within} | {rank} | {r['time_ratio']:.2f} | {r['step_ms']:.2f} |")
  return "\n".join(out)


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
  """Δm% per method (error bars: paired sample std) and Δm% against the step-time ratio."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  rows = sorted(rows, key=lambda r: r["delta_m"])
  names = [r["method"] for r in rows]
  dm = np.array([r["delta_m"] for r in rows])
  err = np.array([r["delta_m_paired_std"] or 0.0 for r in rows])
  colors = ["tab:red" if n.startswith("came") else "tab:gray" if n in (BASELINE,) + EXTRA
            else "tab:blue" for n in names]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, max(4.0, 0.28 * len(rows))))
  ax1.barh(names, dm, xerr=err, color=colors)
  ax1.axvline(0.0, color="k", lw=0.8)
  ax1.set_xlabel("Δm% vs LS (higher is better; error bar: sample std paired by seed)")
  ax2.scatter([r["time_ratio"] for r in rows], dm, c=colors)
  for r, d in zip(rows, dm):
    ax2.annotate(r["method"], (r["time_ratio"], d), fontsize=7, xytext=(3, 2),
                 textcoords="offset points")
  ax2.axhline(0.0, color="k", lw=0.8)
  ax2.set_xlabel("step time / LS (same run)")
  ax2.set_ylabel("Δm% vs LS")
  fig.suptitle("MultiDigits (two overlapping scikit-learn digits), test accuracy")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def _batches(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
  """One epoch of shuffled indices, ``(n // batch_size, batch_size)`` (the rest dropped)."""
  steps = n // batch_size
  return rng.permutation(n)[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def run(config: Config, methods: Sequence[str] | None = None, data: MultiDigits | None = None,
        *, compile_workers: int = 2, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Train every method for every seed; returns the results (see the module docstring).

  Args:
    config: sizes, budget and seeds.
    methods: registry names (default :func:`default_methods`), may add :data:`ONE_PASS`.
    data: the data set (default: ``make_multidigits`` of the config's sizes and data seed).
    compile_workers: methods compiled at once (threads).
    log: progress lines.

  Raises:
    ValueError: an unknown method, no ``ls`` among the methods, too few training examples.
  """
  methods = list(default_methods() if methods is None else methods)
  if BASELINE not in methods:
    raise ValueError(f"methods must include the baseline {BASELINE!r}, got {methods}")
  if config.num_train < config.batch_size:
    raise ValueError(f"num_train ({config.num_train}) is smaller than batch_size "
                     f"({config.batch_size})")
  start = time.perf_counter()
  data = make_multidigits(config.num_train, config.num_test, seed=config.data_seed) \
      if data is None else data
  images, labels = jnp.asarray(data.train_images), jnp.asarray(data.train_labels)
  test_images, test_labels = jnp.asarray(data.test_images), jnp.asarray(data.test_labels)
  canvas = data.train_images.shape[1]

  apply, params0 = flat_model(config, canvas, config.seeds[0])
  num_params = int(params0.size)
  evaluate = make_evaluate(apply)
  steps = config.num_train // config.batch_size
  batch_shape = jax.ShapeDtypeStruct((steps, config.batch_size), jnp.int32)

  def compile_epoch(epoch, state):
    return jax.jit(epoch, donate_argnums=0).lower(state, images, labels, batch_shape).compile()

  def prepare(name):
    t0 = time.perf_counter()
    try:
      trainer = make_trainer(name, apply, params0, config.learning_rate)
      executable = compile_epoch(trainer.epoch, trainer.init(params0, config.seeds[0]))
    except ValueError as e:  # e.g. Krum and TrimmedMean need K >= 3
      if name in (BASELINE, ONE_PASS):
        raise
      return None, str(e), time.perf_counter() - t0
    return trainer, executable, time.perf_counter() - t0

  # Compile every epoch ahead of time (timed apart from training), a few at once: XLA
  # compiles one module on one core.
  trainers, compiled, compile_s, skipped = {}, {}, {}, {}
  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(compile_workers) as pool:
    for name, (trainer, executable, seconds) in zip(methods, pool.map(prepare, methods)):
      if trainer is None:
        skipped[name] = executable
        log(f"skipped {name}: {executable}")
        continue
      trainers[name], compiled[name], compile_s[name] = trainer, executable, seconds
      log(f"compiled {name} ({trainer.kind}) in {seconds:.1f} s")
  compile_wall = time.perf_counter() - t0
  methods = [m for m in methods if m not in skipped]

  runs: dict[str, dict[str, Any]] = {m: {} for m in methods}
  epoch_times: dict[str, list[float]] = {m: [] for m in methods}
  rounds = 0
  for seed in config.seeds:
    _, params = flat_model(config, canvas, seed)  # the same initialisation for every method
    # Own copies: the compiled epochs donate (and so delete) their input state.
    states = {m: trainers[m].init(jax.tree.map(jnp.copy, params), seed) for m in methods}
    step_fns = {m: compiled[m] for m in methods}
    for m in (m for m in methods if trainers[m].per_seed and seed != config.seeds[0]):
      epoch = _epoch_fn(m, _build(m, seed), make_losses(apply), optax.adam(config.learning_rate))
      step_fns[m] = compile_epoch(epoch, states[m])  # its key is in the closure: one per seed
    train_losses: dict[str, list] = {m: [] for m in methods}
    rng = np.random.default_rng([config.data_seed, seed])
    for _ in range(config.epochs):
      batches = jnp.asarray(_batches(rng, config.num_train, config.batch_size))
      shift = rounds % len(methods)
      for m in methods[shift:] + methods[:shift]:  # rotate: no method always first
        t0 = time.perf_counter()
        states[m], losses = step_fns[m](states[m], images, labels, batches)
        losses = jax.block_until_ready(losses)
        epoch_times[m].append(time.perf_counter() - t0)
        train_losses[m].append(np.asarray(losses).tolist())
      rounds += 1
    for m in methods:
      acc, loss = evaluate(states[m][0], test_images, test_labels)
      runs[m][str(seed)] = {"test_accuracy": np.asarray(acc).tolist(),
                            "test_loss": np.asarray(loss).tolist(),
                            "train_loss_per_epoch": train_losses[m]}
    log(f"seed {seed}: " + ", ".join(
        f"{m} {100 * np.mean(runs[m][str(seed)]['test_accuracy']):.1f}" for m in methods))

  times = _ratio_rows(epoch_times, steps, skip=1 if rounds > 1 else 0)
  for m in methods:
    times[m]["compile_s"] = compile_s[m]
  results = {"config": dataclasses.asdict(config), "methods": methods, "skipped": skipped,
             "seeds": list(config.seeds), "tasks": list(TASKS), "num_params": num_params,
             "steps_per_epoch": steps, "runs": runs, "epoch_times_s": epoch_times,
             "times": times, "compile_wall_s": compile_wall,
             "train_wall_s": time.perf_counter() - start - compile_wall,
             "wall_s": time.perf_counter() - start}
  results["summary"] = summarize(results, methods)
  return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  size = parser.add_mutually_exclusive_group()
  size.add_argument("--full", action="store_true", help="5 seeds, 6000 pairs, 10 epochs, a wider CNN")
  size.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
  parser.add_argument("--methods", default=None,
                      help="comma-separated registry names (default: every method); "
                           f"must include {BASELINE!r}; {ONE_PASS!r} adds the one-pass LS timing")
  parser.add_argument("--no-one-pass", action="store_true",
                      help=f"leave out the {ONE_PASS!r} timing reference")
  parser.add_argument("--no-single-task", action="store_true",
                      help=f"leave out the single-task models {SINGLE_TASK} (Δm's baseline)")
  parser.add_argument("--seeds", type=int, default=None, help="number of seeds (0, 1, ...)")
  parser.add_argument("--out", default="runs/multidigits", help="output folder")
  parser.add_argument("--compile-workers", type=int, default=os.cpu_count() or 1,
                      help="methods compiled at once (default: the number of CPUs)")
  args = parser.parse_args(argv)

  common.mark_start()
  common.set_dispatch(False)
  config = FULL if args.full else TINY if args.tiny else DEFAULT
  if args.seeds is not None:
    if args.seeds < 1:
      parser.error(f"--seeds must be >= 1, got {args.seeds}")
    config = dataclasses.replace(config, seeds=tuple(range(args.seeds)))
  methods = list(default_methods() if args.methods is None else
                 [m.strip() for m in args.methods.split(",") if m.strip()])
  if not args.no_one_pass and ONE_PASS not in methods:
    methods.append(ONE_PASS)
  if not args.no_single_task:
    methods += [t for t in SINGLE_TASK if t not in methods]
  loadavg = os.getloadavg()
  results = run(config, methods, compile_workers=args.compile_workers)
  results["loadavg_at_start"], results["loadavg_at_end"] = loadavg, os.getloadavg()
  out = Path(args.out)
  table = markdown_table(results["summary"])
  common.write_json("multidigits", results, out)
  (out / "table.md").write_text(table + "\n")
  plot(results["summary"], out / "multidigits.png")
  print(table)
  if results["skipped"]:
    print("\nnot run: " + "; ".join(f"{m} ({why})" for m, why in results["skipped"].items()))
  print(f"\n{len(results['methods'])} methods x {len(config.seeds)} seeds, {results['num_params']} "
        f"parameters, {results['wall_s']:.0f} s wall, load average {loadavg[0]:.1f} at start, "
        f"{results['loadavg_at_end'][0]:.1f} at end; results in {out}")
  return results


if __name__ == "__main__":
  main()
