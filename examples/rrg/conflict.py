r"""Controlled-conflict study: CAME-Grad minus LS against measured task conflict.

Two knobs, each changing how much the tasks compete for the shared image encoder (the one part
of the model every task's gradient reaches; the decoder belongs to ``nll``, the classifier head
to ``cls``):

* ``mismatch`` (default): a fraction ``p`` of the training studies get the classification
  targets of another, randomly drawn training study, so the classifier must find in the image
  findings that the image and its report do not show (val and test keep their own labels). At
  ``p = 0`` the two tasks want the same features; as ``p`` grows the ``cls`` gradient asks the
  encoder for something the report's gradient does not.
* ``width``: the capacity of the encoder, CNN widths ``(w, 2w, 4w)`` (``w = 16`` the default
  model); a narrower encoder leaves fewer features for the two tasks to share.

What a knob does is *measured*, not assumed, with the diagnostics of the LS runs (where the
update is the joint gradient, so nothing else moves the trajectory), after warmup:

* the cosine of the task gradients on the shared encoder (``encoder_cosine``) and the fraction
  of steps where it is negative: conflict where the tasks actually share parameters;
* the cosine over all parameters (the method's ``cosine`` diagnostic), which the task-specific
  parameters pull towards 0;
* the diffusion decay ``||g_joint|| / sum_k ||h_k||`` (1: no cancellation);

and for the CAME-Grad runs the mean drift of the update from the joint gradient. For every knob
value the study runs LS and CAME-Grad for the seeds and reports CAME-Grad minus LS with the
paired 95% bootstrap interval, as a table (``conflict.md``, ``conflict.json``) and a figure
(``conflict.png``: the difference against the measured encoder cosine).

  python -m examples.rrg.conflict                                   # mismatch 0, 0.25, 0.5, 1
  python -m examples.rrg.conflict --knob width --values 1,2,4,16
  python -m examples.rrg.conflict --values 0,1 --seeds 0,1 --steps 100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from examples.rrg import configs
from examples.rrg.evaluation import stats
from examples.rrg.training import sweep, train


def encoder_channels(width: int, stages: int = 4) -> tuple[int, ...]:
  """The CNN widths of knob value ``width``: ``(w, 2w, 4w)`` for three stages, then ``4w``."""
  if width < 1:
    raise ValueError(f"width must be >= 1, got {width}")
  return tuple(width * min(2 ** i, 4) for i in range(stages))


def mismatch_labels(splits: dict, fraction: float, seed: int = 0) -> dict:
  """``splits`` with a ``fraction`` of the training studies given another study's labels.

  The studies are drawn without replacement; each gets the labels of a training study drawn
  uniformly (possibly itself, so at ``fraction = 1`` about ``1 / N`` keep theirs). Val and
  test are returned unchanged.
  """
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"mismatch fraction must be in [0, 1], got {fraction}")
  train_split = splits["train"]
  n = len(train_split)
  rng = np.random.default_rng(seed)
  chosen = rng.choice(n, size=round(fraction * n), replace=False)
  labels = np.array(train_split.labels, copy=True)
  labels[chosen] = train_split.labels[rng.integers(0, n, size=len(chosen))]
  return {**splits, "train": dataclasses.replace(train_split, labels=labels)}


def measured_conflict(runs: Sequence, tasks: Sequence[str], warmup_steps: int) -> dict:
  """Diagnostics of the runs averaged over steps after warmup, then over runs.

  Returns ``{"cosine", "negative_fraction", "encoder_cosine", "encoder_negative_fraction",
  "diffusion_decay", "drift_deg"}`` (those the runs logged); cosines are means over task pairs.
  """
  k = len(tasks)
  pairs = np.triu_indices(k, 1)
  cos, neg, enc, enc_neg, decay, drift = [], [], [], [], [], []
  for r in runs:
    h = {key: np.asarray(v)[warmup_steps:] for key, v in r.history.items()}
    if "cosine" in h:
      c = h["cosine"][:, pairs[0], pairs[1]]  # (steps, pairs)
      cos.append(c.mean())
      neg.append((c < 0).mean())
    if "encoder_cosine" in h:
      c = h["encoder_cosine"][:, pairs[0], pairs[1]]
      enc.append(c.mean())
      enc_neg.append((c < 0).mean())
    if "diffusion_decay" in h:
      decay.append(h["diffusion_decay"].mean())
    if "drift_deg" in h:
      drift.append(h["drift_deg"].mean())
  out = {}
  for name, values in (("cosine", cos), ("negative_fraction", neg), ("encoder_cosine", enc),
                       ("encoder_negative_fraction", enc_neg), ("diffusion_decay", decay),
                       ("drift_deg", drift)):
    if values:
      out[name] = float(np.mean(values))
  return out


KNOBS = {"mismatch": (0.0, 0.25, 0.5, 1.0), "width": (1, 2, 4, 16)}
"""Knob name -> its default values."""


def setting(config, data: tuple[dict, Any], knob: str, value: float) -> tuple[Any, tuple]:
  """``(config, data)`` of one knob value."""
  if knob == "width":
    channels = encoder_channels(int(value), len(config.model.channels))
    return (dataclasses.replace(config, name=f"{config.name}-width{int(value)}",
                                model=dataclasses.replace(config.model, channels=channels)),
            data)
  if knob == "mismatch":
    splits, tokenizer = data
    return (dataclasses.replace(config, name=f"{config.name}-mismatch{value:g}"),
            (mismatch_labels(splits, float(value), seed=config.data_seed), tokenizer))
  raise ValueError(f"knob must be one of {tuple(KNOBS)}, got {knob!r}")


def run(config, workdir: str, knob: str, values: Sequence[float], *,
        progress: bool = True) -> list[dict]:
  """LS and CAME-Grad at every value of ``knob``; one row of measurements per value."""
  base = train.load_data(config)
  rows = []
  for value in values:
    cfg, data = setting(dataclasses.replace(config, methods=("ls", "came")), base, knob, value)
    t0 = time.perf_counter()
    result = sweep.run(cfg, os.path.join(workdir, f"{knob}_{value:g}"), data=data,
                       progress=progress)
    ci = sweep.intervals(result.runs, "came", num_samples=config.bootstrap_samples)
    ls = [r for r in result.runs if r.method == "ls"]
    came = [r for r in result.runs if r.method == "came"]
    rows.append({
        "knob": knob, "value": value, "channels": list(cfg.model.channels),
        "num_params": ls[0].num_params,
        "ls": measured_conflict(ls, cfg.tasks, cfg.warmup_steps),
        "came": measured_conflict(came, cfg.tasks, cfg.warmup_steps),
        "ce_f1": {m: stats.mean_std([r.metrics["ce_f1"] for r in rs])
                  for m, rs in (("ls", ls), ("came", came))},
        "intervals": ci, "wall_time": time.perf_counter() - t0})
  return rows


def _knob_cell(row: dict) -> str:
  if row["knob"] == "width":
    return f"width {tuple(row['channels'])}"
  return f"mismatch {row['value']:g}"


def table(rows: Sequence[dict]) -> str:
  """Markdown: the knob, the measured conflict, CAME-Grad minus LS with its interval."""
  lines = ["| knob | params | encoder cosine (LS) | steps with encoder cosine < 0 (LS) | "
           "cosine, all parameters (LS) | diffusion decay (LS) | drift (CAME, deg) | "
           "CE-F1 LS | CE-F1 CAME | CE-F1 CAME − LS [95% CI] | BLEU-4 CAME − LS [95% CI] |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for row in rows:
    ls, came, ci = row["ls"], row["came"], row["intervals"]

    def diff(key):
      return f"{ci[key]['diff']:+.3f} {stats.format_interval(ci[key]['low'], ci[key]['high'])}"

    def ce(m):
      mean, std, _ = row["ce_f1"][m]
      return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"

    lines.append(
        f"| {_knob_cell(row)} | {row['num_params']:,} | "
        f"{ls.get('encoder_cosine', np.nan):+.3f} | "
        f"{100 * ls.get('encoder_negative_fraction', np.nan):.0f}% | "
        f"{ls.get('cosine', np.nan):+.3f} | "
        f"{ls.get('diffusion_decay', np.nan):.3f} | {came.get('drift_deg', np.nan):.1f} | "
        f"{ce('ls')} | {ce('came')} | {diff('ce_f1')} | {diff('BLEU_4')} |")
  return "\n".join(lines)


def plot(rows: Sequence[dict], path: str) -> None:
  """CAME-Grad minus LS (CE-F1, BLEU-4) with intervals against the LS runs' encoder cosine."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  x = np.array([row["ls"].get("encoder_cosine", np.nan) for row in rows])
  for ax, key, name in ((axes[0], "ce_f1", "CE-F1 macro"), (axes[1], "BLEU_4", "BLEU-4")):
    diff = np.array([row["intervals"][key]["diff"] for row in rows])
    low = np.array([row["intervals"][key]["low"] for row in rows])
    high = np.array([row["intervals"][key]["high"] for row in rows])
    ax.errorbar(x, diff, yerr=[diff - low, high - diff], fmt="o", capsize=3)
    for xi, di, row in zip(x, diff, rows):
      ax.annotate(_knob_cell(row), (xi, di), textcoords="offset points", xytext=(4, 4),
                  fontsize=7)
    ax.axhline(0.0, color="gray", lw=0.6)
    ax.set_xlabel("cosine of the task gradients on the shared encoder (LS runs)")
    ax.set_ylabel(f"{name}: CAME-Grad − LS")
    ax.grid(alpha=0.3)
  fig.suptitle(f"Controlled conflict ({rows[0]['knob']}): paired 95% intervals")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> list[dict]:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.conflict", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="default", choices=sorted(configs.CONFIGS))
  p.add_argument("--knob", default="mismatch", choices=tuple(KNOBS))
  p.add_argument("--values", help="comma-separated knob values (default: the knob's)")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--steps", type=int)
  p.add_argument("--out", default="runs/rrg_conflict")
  p.add_argument("--no-progress", action="store_true")
  args = p.parse_args(argv)
  try:
    values = ([float(v) for v in args.values.split(",") if v.strip()] if args.values
              else list(KNOBS[args.knob]))
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
  except ValueError:
    raise SystemExit("--values and --seeds must be comma-separated numbers") from None
  changes = {"seeds": seeds}
  if args.steps:
    changes["num_steps"] = args.steps
  config = dataclasses.replace(configs.get_config(args.config), **changes)
  os.makedirs(args.out, exist_ok=True)
  t0 = time.perf_counter()
  try:
    rows = run(config, args.out, args.knob, values, progress=not args.no_progress)
  except ValueError as e:
    raise SystemExit(str(e)) from None
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
    json.dump({"knob": args.knob, "rows": rows, "wall_time": wall,
               "config": dataclasses.asdict(config)}, f, indent=1)
  return rows


if __name__ == "__main__":
  main()
