"""Transformation cost: the ``came_grad`` update against the single-read floor and NumPy.

For K tasks and P parameters, flat (one (K, P) leaf) and as a model-like
pytree (many leaves, transformer shapes, about P numbers in all), this times,
interleaved, jit-compiled, median of repeats:

* the single-read floor, in two layouts: ``floor_dot``, ``ones(K) @ G`` per
  leaf (one GEMV kernel per leaf), and ``floor_fused``, ``sum_k G[k]`` as K
  elementwise adds per leaf, which XLA fuses into one vectorised pass per leaf;
  ``floor`` is the lower of the two in each case and the JSON says which
  (``floor_kind``);
* ``came_grad``: ``came_grad().update`` (Gram, on-device solve, weighted sum,
  diagnostics), what a training step pays on top of its backward passes;
* ``came_grad_xla_dot``: the same update with the Gram as XLA's plain
  ``dot_general`` per leaf (the library's previous implementation);
* ``gram`` and ``gram_xla_dot``: the Gram matrix alone, both ways;
* ``numpy``: NumPy/OpenBLAS doing the same work on the host: ``G @ G.T`` then
  ``c @ G`` (per leaf for the pytree), and ``numpy_gram``, ``G @ G.T`` alone.

Run: ``python -m benchmarks.bench_transform`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import came_grad_jax
from benchmarks import common

# The private module behind ``came_grad_jax.gram`` (its row-layout internals).
gram_module = importlib.import_module("came_grad_jax._gram")

DEFAULT_TASKS = (2, 4, 8)
DEFAULT_SIZES = (10**5, 10**6, 10**7)


def model_like_shapes(num_params: int) -> list[tuple[int, ...]]:
  """Leaf shapes of a small pre-LN transformer with about ``num_params`` parameters.

  Token embedding (vocab x d), per layer q/k/v/out projections (d x d) with
  biases, an MLP (d x 4d, 4d x d) with biases and two layer norms (scale and
  bias), a final norm and an output projection: the mix of large matrices and
  many small vectors a real model's gradient pytree has.
  """
  layers = max(1, min(12, round(math.log10(max(num_params, 10)) - 3) * 2))
  vocab_factor = 4  # vocab = 4 d
  # 12 L d^2 + 2 * 4 d * d (embedding + head) = P, ignoring the vectors.
  d = max(8, int(math.sqrt(num_params / (12 * layers + 2 * vocab_factor))) // 8 * 8)
  shapes: list[tuple[int, ...]] = [(vocab_factor * d, d)]
  for _ in range(layers):
    shapes += [(d,), (d,)]                          # layer norm 1
    shapes += [(d, d), (d,)] * 4                    # q, k, v, out
    shapes += [(d,), (d,)]                          # layer norm 2
    shapes += [(d, 4 * d), (4 * d,), (4 * d, d), (d,)]  # MLP
  shapes += [(d,), (d,), (d, vocab_factor * d), (vocab_factor * d,)]
  return shapes


def make_stacked(num_tasks: int, num_params: int, layout: str, seed: int = 0) -> dict[str, np.ndarray]:
  """Random float32 stacked task gradients, ``{"leaf_i": (K, *shape)}``."""
  rng = np.random.default_rng(seed)
  shapes = [(num_params,)] if layout == "flat" else model_like_shapes(num_params)
  return {f"leaf_{i:03d}": rng.standard_normal((num_tasks, *s), dtype=np.float32)
          for i, s in enumerate(shapes)}


@contextlib.contextmanager
def xla_dot_gram():
  """Trace with the Gram as XLA's plain ``dot_general`` per leaf (the baseline)."""
  saved = gram_module._leaf_gram
  gram_module._leaf_gram = gram_module._dot_gram
  try:
    yield
  finally:
    gram_module._leaf_gram = saved


def _traced_under(ctx, fn, *args):
  """jit ``fn`` and trace it (first call) inside ``ctx``; later calls reuse that trace."""
  # A fresh function object: jit caches traces per function, and the fast
  # version of ``fn`` must not reuse this trace (nor this one the fast one's).
  jitted = jax.jit(lambda *a: fn(*a))
  with ctx():
    common.block(jitted(*args))
  return jitted


def bench_case(num_tasks: int, num_params: int, layout: str, repeats: int) -> dict[str, Any]:
  host = make_stacked(num_tasks, num_params, layout)
  stacked = jax.device_put(host)
  total = sum(x[0].size for x in host.values())
  tx = came_grad_jax.came_grad(num_tasks=num_tasks)
  state = tx.init(jax.tree.map(lambda x: x[0], stacked))
  ones = jnp.ones((num_tasks,), jnp.float32)

  floor_dot = jax.jit(lambda t: jax.tree.map(lambda g: jnp.tensordot(ones, g, axes=1), t))
  floor_fused = jax.jit(lambda t: jax.tree.map(
      lambda g: functools.reduce(operator.add, [g[k] for k in range(num_tasks)]), t))
  update = jax.jit(lambda u, s: tx.update(u, s))
  update_dot = _traced_under(xla_dot_gram, tx.update, stacked, state)
  gram = jax.jit(lambda t: came_grad_jax.gram(t))
  gram_dot = _traced_under(xla_dot_gram, came_grad_jax.gram, stacked)

  leaves = list(host.values())
  flat = [x.reshape(num_tasks, -1) for x in leaves]
  coeffs = np.asarray(update(stacked, state)[1].diagnostics.coefficients, np.float32)

  def numpy_update():
    m = sum(x @ x.T for x in flat)
    return m, [coeffs @ x for x in flat]

  def numpy_gram():
    return sum(x @ x.T for x in flat)

  # Correctness of what is timed: the fused Gram against float64 NumPy.
  ref = sum(x.astype(np.float64) @ x.T.astype(np.float64) for x in flat)
  gram_err = float(np.max(np.abs(np.asarray(gram(stacked)) - ref)) / np.max(np.abs(ref)))

  fns = {
      "floor_dot": lambda: common.block(floor_dot(stacked)),
      "floor_fused": lambda: common.block(floor_fused(stacked)),
      "came_grad": lambda: common.block(update(stacked, state)),
      "came_grad_xla_dot": lambda: common.block(update_dot(stacked, state)),
      "gram": lambda: common.block(gram(stacked)),
      "gram_xla_dot": lambda: common.block(gram_dot(stacked)),
      "numpy": numpy_update,
      "numpy_gram": numpy_gram,
  }
  load_before = common.loadavg()
  times = common.interleaved(fns, repeats=repeats,
                             min_time=0.02 if total <= 10**5 else 0.0)
  load_after = common.loadavg()
  floor_kind = min(("floor_dot", "floor_fused"), key=lambda n: times[n]["median_s"])
  times["floor"] = dict(times[floor_kind])
  t = {k: v["median_s"] for k, v in times.items()}
  ratios = {
      "came_grad/numpy": t["came_grad"] / t["numpy"],
      "came_grad/floor": t["came_grad"] / t["floor"],
      "came_grad_xla_dot/numpy": t["came_grad_xla_dot"] / t["numpy"],
      "came_grad_xla_dot/floor": t["came_grad_xla_dot"] / t["floor"],
      "gram/numpy_gram": t["gram"] / t["numpy_gram"],
      "gram_xla_dot/numpy_gram": t["gram_xla_dot"] / t["numpy_gram"],
      "numpy/floor": t["numpy"] / t["floor"],
      "came_grad/floor_dot": t["came_grad"] / t["floor_dot"],
      "came_grad/floor_fused": t["came_grad"] / t["floor_fused"],
      "gram/floor": t["gram"] / t["floor"],
  }
  return {"num_tasks": num_tasks, "num_params": total, "layout": layout,
          "num_leaves": len(host), "times": times, "ratios": ratios, "floor_kind": floor_kind,
          "loadavg_before": load_before, "loadavg_after": load_after,
          "gram_rel_error_vs_float64": gram_err}


def plot(cases: list[dict[str, Any]], path) -> None:
  plt = common.pyplot()
  if plt is None:
    return
  layouts = sorted({c["layout"] for c in cases})
  tasks = sorted({c["num_tasks"] for c in cases})
  fig, axes = plt.subplots(len(layouts), len(tasks), figsize=(4 * len(tasks), 3.3 * len(layouts)),
                           squeeze=False, sharey=True)
  for r, layout in enumerate(layouts):
    for col, k in enumerate(tasks):
      ax = axes[r][col]
      sel = sorted((c for c in cases if c["layout"] == layout and c["num_tasks"] == k),
                   key=lambda c: c["num_params"])
      if not sel:  # a run cut short: no case for this panel
        ax.set_visible(False)
        continue
      sizes = [c["num_params"] for c in sel]
      for name, style in (("came_grad", "o-"), ("came_grad_xla_dot", "s--"),
                          ("numpy", "^-"), ("floor", "k:")):
        ax.plot(sizes, [c["times"][name]["median_s"] / c["times"]["floor"]["median_s"]
                        for c in sel], style, label=name if name != "floor" else "floor (lower layout)")
      ax.axhline(1.0, color="grey", lw=0.5)
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_title(f"{layout}, K={k}")
      ax.set_xlabel("P (parameters)")
      if col == 0:
        ax.set_ylabel("time / single-read floor")
  axes[0][0].legend(fontsize=7)
  fig.suptitle("came_grad update cost relative to one read of the gradients (median)")
  common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = common.parser(__doc__, tasks=DEFAULT_TASKS)
  parser.add_argument("--sizes", type=float, nargs="+", default=list(DEFAULT_SIZES))
  parser.add_argument("--layouts", nargs="+", default=["flat", "tree"], choices=["flat", "tree"])
  parser.add_argument("--name", default="transform",
                      help="results file name (default transform: <out>/transform.json)")
  args = common.parse(parser, argv)
  if args.quick:
    args.tasks, args.sizes, args.repeats = [3], [2000], 1
  cases = []
  for layout in args.layouts:
    for k in args.tasks:
      for p in args.sizes:
        case = bench_case(k, int(p), layout, args.repeats)
        cases.append(case)
        # After every case, so that a run cut short keeps what it measured.
        common.write_json(args.name, {"cases": cases, "complete": False}, args.out)
        r = case["ratios"]
        print(f"transform {layout:4s} K={k} P={case['num_params']:.1e}: "
              f"came_grad {common.fmt_ms(case['times']['came_grad']['median_s'])} ms, "
              f"/numpy {r['came_grad/numpy']:.2f}, /floor {r['came_grad/floor']:.2f} "
              f"({case['floor_kind']}); load {case['loadavg_before'][0]:.1f}; "
              f"xla-dot version /numpy {r['came_grad_xla_dot/numpy']:.2f}", flush=True)
  path = common.write_json(args.name, {"cases": cases, "complete": True}, args.out)
  plot(cases, path.with_suffix(".png"))
  return {"cases": cases, "json": str(path)}


if __name__ == "__main__":
  main()
