"""Whole aggregation against the peers: K task gradients (K x P) in, one update out.

Ours: ``came_grad`` and ``aggregate(cagrad(0.4, rescale=False))`` updates
(jit-compiled: fused Gram, on-device solve, weighted sum). Peers, on the same
float32 matrix on the CPU, when installed: TorchJD's ``CAGrad(c=0.4)``
(Gramian in torch, weights by cvxpy/Clarabel on the host), ``MGDA`` and
``UPGrad``; and ``numpy_scipy_cagrad``: ``G @ G.T`` in NumPy, SLSQP weights
(SciPy), ``c @ G`` in NumPy -- the LibMTL / CAGrad-repo recipe.

Run: ``python -m benchmarks.bench_peers`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

import came_grad_jax
from benchmarks import common, peers
from benchmarks.bench_transform import make_stacked
from came_grad_jax import weightings

DEFAULT_TASKS = (2, 4, 8)
DEFAULT_SIZES = (10**5, 10**6)
CAGRAD_C = 0.4


def bench_case(num_tasks: int, num_params: int, repeats: int) -> dict[str, Any]:
  host = make_stacked(num_tasks, num_params, "flat")["leaf_000"]
  dev = jax.device_put(host)
  params = jax.ShapeDtypeStruct(host.shape[1:], host.dtype)
  fns = {}
  for name, tx in (("came_grad", came_grad_jax.came_grad(num_tasks=num_tasks)),
                   ("cagrad", came_grad_jax.aggregate(
                       weightings.cagrad(CAGRAD_C, rescale=False), num_tasks=num_tasks))):
    state = tx.init(params)
    update = jax.jit(lambda u, s, tx=tx: tx.update(u, s)[0])
    fns[name] = lambda update=update, state=state: common.block(update(dev, state))
  if peers.torchjd_available():
    import torch
    matrix = torch.from_numpy(host)
    for name, aggregator in peers.torchjd_aggregators(CAGRAD_C).items():
      fns[name] = lambda a=aggregator: a(matrix)
  if peers.scipy_available():
    def numpy_scipy_cagrad():
      m = host @ host.T
      return peers.scipy_cagrad_weights(m, CAGRAD_C).astype(np.float32) @ host
    fns["numpy_scipy_cagrad"] = numpy_scipy_cagrad
  times = common.interleaved(fns, repeats=repeats)
  t = {k: v["median_s"] for k, v in times.items()}
  ratios = {f"{peer}/{mine}": t[peer] / t[mine]
            for peer, mine in (("torchjd_cagrad", "cagrad"), ("torchjd_cagrad", "came_grad"),
                               ("numpy_scipy_cagrad", "cagrad"), ("torchjd_upgrad", "came_grad"),
                               ("torchjd_mgda", "came_grad"))
            if peer in t and mine in t}
  return {"num_tasks": num_tasks, "num_params": num_params, "times": times, "speedup": ratios}


def plot(cases, path) -> None:
  plt = common.pyplot()
  if plt is None:
    return
  sizes = sorted({c["num_params"] for c in cases})
  fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.6), squeeze=False)
  for ax, p in zip(axes[0], sizes):
    sel = sorted((c for c in cases if c["num_params"] == p), key=lambda c: c["num_tasks"])
    names = list(sel[0]["times"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
      ax.bar(np.arange(len(sel)) + i * width, [c["times"][name]["median_s"] * 1e3 for c in sel],
             width, label=name)
    ax.set_xticks(np.arange(len(sel)) + 0.4 - width / 2, [f"K={c['num_tasks']}" for c in sel])
    ax.set_yscale("log")
    ax.set_ylabel("median ms per aggregation")
    ax.set_title(f"P = {p:.0e}")
  axes[0][0].legend(fontsize=7)
  common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = common.parser(__doc__, tasks=DEFAULT_TASKS)
  parser.add_argument("--sizes", type=float, nargs="+", default=list(DEFAULT_SIZES))
  args = common.parse(parser, argv)
  if args.quick:
    args.tasks, args.sizes, args.repeats = [3], [2000], 1
  cases = []
  for p in args.sizes:
    for k in args.tasks:
      case = bench_case(k, int(p), args.repeats)
      cases.append(case)
      print(f"peers K={k} P={p:.0e}: " + ", ".join(
          f"{n} {v['median_s'] * 1e3:.3g}ms" for n, v in case["times"].items())
            + "; speedups " + ", ".join(f"{n} {v:.1f}x" for n, v in case["speedup"].items()),
            flush=True)
  path = common.write_json("peers", {"cagrad_c": CAGRAD_C, "cases": cases}, args.out)
  plot(cases, path.with_suffix(".png"))
  return {"cases": cases, "json": str(path)}


if __name__ == "__main__":
  main()
