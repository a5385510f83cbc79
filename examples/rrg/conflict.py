r"""Controlled-conflict study: CAME-Grad minus LS against measured task conflict.

The knob is the capacity of the shared image encoder, the only part every task's gradient
reaches (the decoder belongs to ``nll``, the classifier head to ``cls``): the CNN widths are
``(w, 2w, 4w)`` (three stages, as the default model; ``w = 16`` is the default). A narrower encoder leaves fewer features
for the report and the classifier to share, so the tasks compete harder for them. What the knob
does is *measured*, not assumed, with the diagnostics of the LS runs (where the update is the
joint gradient, so nothing else moves the trajectory):

* the mean pairwise cosine of the task gradients after warmup, and the fraction of steps where
  it is negative (conflict in direction);
* the diffusion decay ``||g_joint|| / sum_k ||h_k||`` (1: no cancellation);

and for the CAME-Grad runs the mean drift of the update from the joint gradient. For every
width the study runs LS and CAME-Grad for the config's seeds and reports CAME-Grad minus LS
with the paired 95% bootstrap interval, as a table (``conflict.md``, ``conflict.json``) and a
figure (``conflict.png``: the difference against the measured cosine).

  python -m examples.rrg.conflict                         # widths 1, 2, 4, 16; 3 seeds
  python -m examples.rrg.conflict --widths 2,16 --seeds 0,1 --steps 100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence

import numpy as np

from examples.rrg import configs, stats, sweep, train


def encoder_channels(width: int, stages: int = 4) -> tuple[int, ...]:
  """The CNN widths of knob value ``width``: ``(w, 2w, 4w)`` for three stages, then ``4w``."""
  if width < 1:
    raise ValueError(f"width must be >= 1, got {width}")
  return tuple(width * min(2 ** i, 4) for i in range(stages))


def measured_conflict(runs: Sequence, tasks: Sequence[str], warmup_steps: int) -> dict:
  """Diagnostics of the runs averaged over steps after warmup, then over runs.

  Returns ``{"cosine", "negative_fraction", "diffusion_decay", "drift_deg"}`` (those the runs
  logged); the cosine is the mean over task pairs.
  """
  k = len(tasks)
  pairs = np.triu_indices(k, 1)
  cos, neg, decay, drift = [], [], [], []
  for r in runs:
    h = {key: np.asarray(v)[warmup_steps:] for key, v in r.history.items()}
    if "cosine" in h:
      c = h["cosine"][:, pairs[0], pairs[1]]  # (steps, pairs)
      cos.append(c.mean())
      neg.append((c < 0).mean())
    if "diffusion_decay" in h:
      decay.append(h["diffusion_decay"].mean())
    if "drift_deg" in h:
      drift.append(h["drift_deg"].mean())
  out = {}
  for name, values in (("cosine", cos), ("negative_fraction", neg),
                       ("diffusion_decay", decay), ("drift_deg", drift)):
    if values:
      out[name] = float(np.mean(values))
  return out


def run(config, workdir: str, widths: Sequence[int], *, progress: bool = True) -> list[dict]:
  """LS and CAME-Grad at every encoder width; one row of measurements per width."""
  data = train.load_data(config)
  rows = []
  for width in widths:
    cfg = dataclasses.replace(
        config, name=f"{config.name}-width{width}", methods=("ls", "came"),
        model=dataclasses.replace(config.model, channels=encoder_channels(
            width, len(config.model.channels))))
    t0 = time.perf_counter()
    result = sweep.run(cfg, os.path.join(workdir, f"width_{width}"), data=data,
                       progress=progress)
    ci = sweep.intervals(result.runs, "came", num_samples=config.bootstrap_samples)
    ls = [r for r in result.runs if r.method == "ls"]
    came = [r for r in result.runs if r.method == "came"]
    rows.append({
        "width": width, "channels": list(cfg.model.channels),
        "num_params": ls[0].num_params,
        "ls": measured_conflict(ls, cfg.tasks, cfg.warmup_steps),
        "came": measured_conflict(came, cfg.tasks, cfg.warmup_steps),
        "ce_f1": {m: stats.mean_std([r.metrics["ce_f1"] for r in rs])
                  for m, rs in (("ls", ls), ("came", came))},
        "intervals": ci, "wall_time": time.perf_counter() - t0})
  return rows


def table(rows: Sequence[dict]) -> str:
  """Markdown: the knob, the measured conflict, CAME-Grad minus LS with its interval."""
  lines = ["| encoder widths | params | cosine (LS) | steps with cosine < 0 (LS) | "
           "diffusion decay (LS) | drift (CAME, deg) | CE-F1 LS | CE-F1 CAME | "
           "CE-F1 CAME − LS [95% CI] | BLEU-4 CAME − LS [95% CI] |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for row in rows:
    ls, came, ci = row["ls"], row["came"], row["intervals"]

    def diff(key):
      return f"{ci[key]['diff']:+.3f} {stats.format_interval(ci[key]['low'], ci[key]['high'])}"

    def ce(m):
      mean, std, _ = row["ce_f1"][m]
      return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"

    lines.append(
        f"| {tuple(row['channels'])} | {row['num_params']:,} | {ls.get('cosine', np.nan):+.3f} | "
        f"{100 * ls.get('negative_fraction', np.nan):.0f}% | "
        f"{ls.get('diffusion_decay', np.nan):.3f} | {came.get('drift_deg', np.nan):.1f} | "
        f"{ce('ls')} | {ce('came')} | {diff('ce_f1')} | {diff('BLEU_4')} |")
  return "\n".join(lines)


def plot(rows: Sequence[dict], path: str) -> None:
  """CAME-Grad minus LS (CE-F1, BLEU-4) with intervals against the LS runs' mean cosine."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  x = np.array([row["ls"].get("cosine", np.nan) for row in rows])
  for ax, key, name in ((axes[0], "ce_f1", "CE-F1 macro"), (axes[1], "BLEU_4", "BLEU-4")):
    diff = np.array([row["intervals"][key]["diff"] for row in rows])
    low = np.array([row["intervals"][key]["low"] for row in rows])
    high = np.array([row["intervals"][key]["high"] for row in rows])
    ax.errorbar(x, diff, yerr=[diff - low, high - diff], fmt="o", capsize=3)
    for xi, di, row in zip(x, diff, rows):
      ax.annotate(f"w={row['width']}", (xi, di), textcoords="offset points", xytext=(4, 4),
                  fontsize=8)
    ax.axhline(0.0, color="gray", lw=0.6)
    ax.set_xlabel("mean cosine of the task gradients (LS runs)")
    ax.set_ylabel(f"{name}: CAME-Grad − LS")
    ax.grid(alpha=0.3)
  fig.suptitle("Controlled conflict: shared encoder width w, paired 95% intervals")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> list[dict]:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.conflict", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="default", choices=sorted(configs.CONFIGS))
  p.add_argument("--widths", default="1,2,4,16", help="comma-separated encoder widths w")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--steps", type=int)
  p.add_argument("--out", default="runs/rrg_conflict")
  p.add_argument("--no-progress", action="store_true")
  args = p.parse_args(argv)
  try:
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
  except ValueError:
    raise SystemExit("--widths and --seeds must be comma-separated integers") from None
  changes = {"seeds": seeds}
  if args.steps:
    changes["num_steps"] = args.steps
  config = dataclasses.replace(configs.get_config(args.config), **changes)
  os.makedirs(args.out, exist_ok=True)
  t0 = time.perf_counter()
  rows = run(config, args.out, widths, progress=not args.no_progress)
  wall = time.perf_counter() - t0
  md = table(rows)
  footer = (f"config `{config.name}` (tasks {list(config.tasks)}, weights "
            f"{list(config.task_weights)}), {config.num_steps} steps, seeds {list(seeds)}; "
            f"measured after the {config.warmup_steps} warmup steps; wall time {wall:.0f} s "
            f"({os.cpu_count()} CPU cores).")
  print("\n" + md + "\n\n" + footer, flush=True)
  plot(rows, os.path.join(args.out, "conflict.png"))
  with open(os.path.join(args.out, "conflict.md"), "w", encoding="utf-8") as f:
    f.write(f"{md}\n\n{footer}\n\n![conflict](conflict.png)\n")
  with open(os.path.join(args.out, "conflict.json"), "w", encoding="utf-8") as f:
    json.dump({"rows": rows, "wall_time": wall, "config": dataclasses.asdict(config)}, f,
              indent=1)
  return rows


if __name__ == "__main__":
  main()
