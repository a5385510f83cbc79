"""The GPU figures in one run: update vs floor, step vs the K-gradient floor, RRG step ratios.

Writes ``<out>/gpu_check.json`` (default ``benchmarks/results/gpu``) with

* ``transform``: ``bench_transform``'s cases (K in {2, 4, 8}, P in {1e6, 1e7}, flat and
  tree) on the default device: the ``came_grad`` update over the single-read floor (per-leaf
  GEMV and fused adds, the lower one), each case timed in one interleaved loop;
* ``steps``: for the RRG model and the 3.8M-parameter transformer of ``bench_comm`` (K = 3,
  one device), the train step of ``ls_1bwd`` (one backward pass of the weighted sum), ``ls``
  (the K task gradients, summed: the K-gradient floor) and ``came``, timed in ONE interleaved
  loop, with ``came / ls`` (the step over the K-gradient floor) and ``came / ls_1bwd``.

Every part records the load average before and after. Meant for ``bash
benchmarks/gpu_check.sh`` (under 8 minutes on one GPU); runs anywhere (``--quick``: tiny
sizes, seconds, for the tests).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax

from benchmarks import bench_comm, bench_scaling, bench_transform, common

STEP_METHODS = ("ls_1bwd", "ls", "came")


def transform_part(tasks, sizes, layouts, repeats: int) -> list[dict]:
  cases = []
  for layout in layouts:
    for k in tasks:
      for p in sizes:
        case = bench_transform.bench_case(k, int(p), layout, repeats)
        cases.append(case)
        print(f"transform {layout} K={k} P={case['num_params']:.1e}: came_grad / floor "
              f"{case['ratios']['came_grad/floor']:.2f} ({case['floor_kind']})", flush=True)
  return cases


def steps_part(models, k: int, repeats: int, quick: bool) -> list[dict]:
  rows = []
  for name in models:
    problem = bench_comm.PROBLEMS[name](quick)
    before = common.loadavg()
    times = bench_scaling.time_steps(problem, STEP_METHODS, k, [1], repeats=repeats)
    after = common.loadavg()
    t = {m: times[m][1]["median_s"] for m in STEP_METHODS}
    row = {"model": name, "num_params": bench_comm.num_params(problem.params), "num_tasks": k,
           "times": {m: times[m][1] for m in STEP_METHODS},
           "ratios": {"came/ls": t["came"] / t["ls"], "came/ls_1bwd": t["came"] / t["ls_1bwd"],
                      "ls/ls_1bwd": t["ls"] / t["ls_1bwd"]},
           "loadavg_before": before, "loadavg_after": after}
    rows.append(row)
    print(f"step {name} K={k}: " + ", ".join(f"{n} {v:.2f}" for n, v in row["ratios"].items()),
          flush=True)
  return rows


def main(argv: list[str] | None = None) -> dict:
  p = common.parser(__doc__)
  p.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
  p.add_argument("--models", nargs="+", default=["rrg", "transformer"],
                 choices=list(bench_comm.PROBLEMS))
  args = common.parse(p, argv)
  start = time.perf_counter()
  if args.quick:
    tasks, sizes, layouts, repeats = [2], [2000], ["flat"], 1
  else:
    tasks, sizes, layouts, repeats = [2, 4, 8], args.sizes, ["flat", "tree"], args.repeats
  out = Path(args.out) if args.out else common.RESULTS / "gpu"
  payload = {"backend": jax.default_backend(),
             "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
             "transform": transform_part(tasks, sizes, layouts, repeats), "steps": [],
             "complete": False}
  # Written after each part, so that a run cut short by the time limit keeps what it measured.
  payload["wall_s"] = time.perf_counter() - start
  common.write_json("gpu_check", payload, out)
  payload["steps"] = steps_part(args.models, 3 if not args.quick else 2, repeats, args.quick)
  payload["complete"] = True
  payload["wall_s"] = time.perf_counter() - start
  path = common.write_json("gpu_check", payload, out)
  print(f"wrote {path} in {payload['wall_s']:.0f} s")
  return payload


if __name__ == "__main__":
  main()
