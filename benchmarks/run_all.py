"""Run every benchmark; JSON and PNG files go to ``benchmarks/results/`` (or ``--out``).

    python -m benchmarks.run_all            # small default, a few minutes on 2 CPU cores
    python -m benchmarks.run_all --full     # the issue's whole grid (P up to 1e7)
    python -m benchmarks.run_all --quick    # seconds: tiny sizes, one repeat (CI smoke)

Then ``python -m benchmarks.report`` prints the Markdown tables of the README.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import bench_peers, bench_train_step, bench_transform, bench_weighting, common


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  size = parser.add_mutually_exclusive_group()
  size.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (smoke test)")
  size.add_argument("--full", action="store_true", help="P in {1e5, 1e6, 1e7}, more repeats")
  parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
  parser.add_argument("--only", nargs="+", default=None,
                      choices=["transform", "weighting", "peers", "train_step"])
  common.add_dispatch_flag(parser)
  args = common.parse(parser, argv)
  shared = (["--out", args.out] if args.out else []) + (
      ["--async-dispatch"] if args.async_dispatch else [])
  if args.quick:
    plan = {name: ["--quick"] for name in ("transform", "weighting", "peers", "train_step")}
  elif args.full:
    plan = {"transform": ["--sizes", "1e5", "1e6", "1e7", "--repeats", "7"],
            "weighting": ["--repeats", "7"],
            "peers": ["--sizes", "1e5", "1e6", "--repeats", "7"],
            "train_step": ["--repeats", "7"]}
  else:
    plan = {"transform": ["--sizes", "1e5", "1e6", "--repeats", "5"],
            "weighting": ["--tasks", "2", "3", "4", "8", "16", "32", "--repeats", "5"],
            "peers": ["--sizes", "1e5", "--repeats", "5"],
            "train_step": ["--repeats", "5"]}
  mains = {"transform": bench_transform.main, "weighting": bench_weighting.main,
           "peers": bench_peers.main, "train_step": bench_train_step.main}
  start = time.perf_counter()
  for name, extra in plan.items():
    if args.only and name not in args.only:
      continue
    t0 = time.perf_counter()
    mains[name](extra + shared)
    print(f"== {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
  print(f"== all done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  main()
