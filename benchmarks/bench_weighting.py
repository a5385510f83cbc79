"""Weighting solve time alone: (K, K) Gram in, K coefficients out, K in 2..32.

Ours (jit-compiled, on device, no host callback): ``came`` (S1 + S2 + S3),
``cagrad`` and, where the library has them, ``mgda`` and ``upgrad``. Peers on
the same matrices, when installed: TorchJD's ``CAGradWeighting`` (cvxpy +
Clarabel), ``MGDAWeighting``, ``UPGradWeighting`` (quadprog), and CAGrad solved
by SciPy's SLSQP as in the CAGrad authors' code. Also reported: how far apart
the CAGrad coefficients of the three solvers are on each matrix.

Run: ``python -m benchmarks.bench_weighting`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import came_grad_jax as cg
from benchmarks import common, peers

DEFAULT_TASKS = (2, 3, 4, 6, 8, 12, 16, 24, 32)
CAGRAD_C = 0.4


def conflicting_gram(num_tasks: int, seed: int = 0, dim: int = 256) -> np.ndarray:
  """A Gram matrix of K gradients sharing a common direction, with conflicts."""
  rng = np.random.default_rng(seed + num_tasks)
  common_dir = rng.standard_normal(dim)
  g = 0.4 * common_dir + rng.standard_normal((num_tasks, dim))
  g *= np.exp(rng.uniform(-1.0, 1.0, (num_tasks, 1)))  # norms over a factor e^2
  return (g @ g.T).astype(np.float32)


def ours() -> dict[str, Any]:
  """The library's weightings timed here, built through its registry."""
  return {"came": cg.get_method("came").weighting(0.5, 1.5, 0.2),
          "cagrad": cg.get_method("cagrad").weighting(CAGRAD_C, rescale=False),
          "mgda": cg.get_method("mgda").weighting(),
          "upgrad": cg.get_method("upgrad").weighting()}


def bench_case(num_tasks: int, repeats: int, min_time: float) -> dict[str, Any]:
  m = conflicting_gram(num_tasks)
  m_dev = jnp.asarray(m)
  fns, coeffs = {}, {}
  for name, w in ours().items():
    jitted = jax.jit(lambda g, w=w: w(g))
    coeffs[name] = np.asarray(jitted(m_dev))
    fns[name] = lambda jitted=jitted: common.block(jitted(m_dev))
  if peers.torchjd_available():
    import torch
    m_torch = torch.from_numpy(m)
    for name, w in peers.torchjd_weightings(CAGRAD_C).items():
      coeffs[name] = w(m_torch).numpy()
      fns[name] = lambda w=w: w(m_torch)
  if peers.scipy_available():
    coeffs["scipy_cagrad"] = peers.scipy_cagrad_weights(m, CAGRAD_C)
    fns["scipy_cagrad"] = lambda: peers.scipy_cagrad_weights(m, CAGRAD_C)
  times = common.interleaved(fns, repeats=repeats, min_time=min_time)
  t = {k: v["median_s"] for k, v in times.items()}
  ratios = {}
  for peer, mine in (("torchjd_cagrad", "cagrad"), ("torchjd_cagrad", "came"),
                     ("scipy_cagrad", "cagrad"), ("torchjd_mgda", "mgda"),
                     ("torchjd_upgrad", "upgrad")):
    if peer in t and mine in t:
      ratios[f"{peer}/{mine}"] = t[peer] / t[mine]
  agreement = {}
  for peer in ("torchjd_cagrad", "scipy_cagrad"):
    if peer in coeffs:
      agreement[f"max|cagrad - {peer}|"] = float(np.max(np.abs(coeffs["cagrad"] - coeffs[peer])))
  return {"num_tasks": num_tasks, "times": times, "speedup": ratios,
          "coefficient_agreement": agreement}


def plot(cases, path) -> None:
  plt = common.pyplot()
  if plt is None:
    return
  fig, ax = plt.subplots(figsize=(6.5, 4))
  names = sorted({n for c in cases for n in c["times"]})
  for name in names:
    ks = [c["num_tasks"] for c in cases if name in c["times"]]
    ts = [c["times"][name]["median_s"] * 1e6 for c in cases if name in c["times"]]
    ax.plot(ks, ts, "o--" if name.startswith(("torchjd", "scipy")) else "o-", label=name)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("K (tasks)")
  ax.set_ylabel("median time per call (us)")
  ax.set_title("Weighting solve time: Gram (K x K) -> coefficients")
  ax.legend(fontsize=7, ncol=2)
  common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = common.parser(__doc__, tasks=DEFAULT_TASKS)
  parser.add_argument("--min-time", type=float, default=0.02,
                      help="seconds each timed round repeats a call for (averaged)")
  args = common.parse(parser, argv)
  if args.quick:
    args.tasks, args.repeats, args.min_time = [3], 1, 0.0
  cases = []
  for k in args.tasks:
    case = bench_case(k, args.repeats, args.min_time)
    cases.append(case)
    t = case["times"]
    print(f"weighting K={k}: " + ", ".join(f"{n} {v['median_s'] * 1e6:.0f}us"
                                          for n, v in t.items())
          + "; speedups " + ", ".join(f"{n} {v:.0f}x" for n, v in case["speedup"].items()),
          flush=True)
  path = common.write_json("weighting", {"cagrad_c": CAGRAD_C, "cases": cases}, args.out)
  plot(cases, path.with_suffix(".png"))
  return {"cases": cases, "json": str(path)}


if __name__ == "__main__":
  main()
