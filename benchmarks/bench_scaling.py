"""Step time of one train step on 1, 2, 4, 8 devices (data parallel), relative to 1 device.

The step and the layout are ``bench_comm``'s (K task gradients, the method, AdamW under one
``jit``; the batch split over the ``data`` axis of a ``data=n`` mesh over the first n devices,
the global batch the same for every n). On a CPU the "devices" are simulated
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and share the same cores, so the
ratios measure what splitting the step costs (partitioning, collectives, per-device launch),
not a speed-up; ``benchmarks/gpu_scaling.sh`` runs the same on real accelerators.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m benchmarks.bench_scaling
  python -m benchmarks.bench_scaling --quick --devices 1 2   # tiny models, seconds
"""

from __future__ import annotations

import jax

from benchmarks import bench_comm, common

DEVICES = (1, 2, 4, 8)


def time_steps(problem: bench_comm.Problem, methods, k: int, counts, *,
               repeats: int) -> dict[str, dict[int, dict[str, float]]]:
  """``{method: {n: timing}}`` of the step on ``data=n`` meshes, all in ONE interleaved loop.

  Every (method, device count) pair is a candidate of the same ``common.interleaved`` loop,
  so a ratio between two methods at one device count (CAME-Grad / LS) and between two device
  counts of one method both come from rounds that saw the same machine load.
  """
  params = problem.init()
  batch = problem.random_batch()
  fns = {}
  for method in methods:
    for n in counts:
      mesh = bench_comm.sharding.make_mesh(f"data={n}", jax.devices()[:n])
      jitted, (p_sh, o_sh, b_sh), _ = bench_comm.sharded_step(problem, method, k, mesh)
      _, tx = bench_comm.train_step(problem, method, k)
      p = jax.device_put(params, p_sh)
      state = [p, jax.jit(tx.init, out_shardings=o_sh)(p), jax.device_put(batch, b_sh)]

      def run(jitted=jitted, state=state):
        # Every call starts from the same parameters: a timing, not a training run.
        return common.block(jitted(*state))
      fns[f"{method}@{n}"] = run
  times = common.interleaved(fns, repeats=repeats)
  return {m: {n: times[f"{m}@{n}"] for n in counts} for m in methods}


def ratio_rows(rows, numerator: str = "came", denominator: str = "ls_1bwd") -> list[dict]:
  """Per (model, K) and device count: ``numerator`` / ``denominator`` step time, same loop."""
  out = []
  for r in rows:
    if r["method"] != numerator:
      continue
    base = next((b for b in rows if b["method"] == denominator and b["model"] == r["model"]
                 and b["num_tasks"] == r["num_tasks"]), None)
    if base is None:
      continue
    out.append({"model": r["model"], "num_params": r["num_params"],
                "num_tasks": r["num_tasks"], "ratio": f"{numerator}/{denominator}",
                "by_devices": {n: r["times"][n]["median_s"] / base["times"][n]["median_s"]
                               for n in r["times"] if n in base["times"]}})
  return out


def main(argv: list[str] | None = None) -> list[dict]:
  p = common.parser(__doc__, tasks=(3,))
  p.add_argument("--models", nargs="+", default=list(bench_comm.PROBLEMS),
                 choices=list(bench_comm.PROBLEMS))
  p.add_argument("--methods", nargs="+", default=["ls_1bwd", "came"],
                 choices=list(bench_comm.METHODS))
  p.add_argument("--devices", type=int, nargs="+", default=list(DEVICES))
  args = common.parse(p, argv)
  counts = [n for n in args.devices if n <= jax.device_count()]
  skipped = sorted(set(args.devices) - set(counts))
  if skipped:
    print(f"only {jax.device_count()} devices: skipping {skipped}")
  repeats = args.repeats
  rows = []
  for name in args.models:
    problem = bench_comm.PROBLEMS[name](args.quick)
    for k in ([2] if args.quick else args.tasks):
      load_before = common.loadavg()
      by_method = time_steps(problem, args.methods, k, counts, repeats=repeats)
      load_after = common.loadavg()
      for method, times in by_method.items():
        rows.append({"model": name, "num_params": bench_comm.num_params(problem.params),
                     "num_tasks": k, "method": method,
                     "times": {str(n): t for n, t in times.items()},
                     "loadavg_before": load_before, "loadavg_after": load_after})
        print(f"{name} K={k} {method}: " + ", ".join(
            f"{n} dev {common.fmt_ms(t['median_s'])} ms" for n, t in times.items()), flush=True)
      # After every model, so that a run cut short keeps what it measured.
      common.write_json("scaling", {"rows": rows, "ratios": ratio_rows(rows), "devices": counts,
                                    "one_loop": True, "complete": False,
                                    "platform": jax.default_backend()}, args.out)
  from benchmarks.report import scaling_table  # the one renderer of this table
  print(scaling_table({"rows": rows, "ratios": ratio_rows(rows)}))
  common.write_json("scaling", {"rows": rows, "ratios": ratio_rows(rows), "devices": counts,
                                "one_loop": True, "complete": True,
                                "platform": jax.default_backend()}, args.out)
  return rows


if __name__ == "__main__":
  main()
