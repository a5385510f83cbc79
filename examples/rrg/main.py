r"""The main job: linear scalarization vs CAME-Grad on radiology report generation.

Trains every method for every seed, evaluates on the test split, prints a table of
mean +- std over seeds, writes it as ``results.md`` and ``results.json`` under ``--out`` and
plots training curves with the Double Dilemma diagnostics to ``training_curves.png``.

  python -m examples.rrg.main                          # default config, synthetic data
  python -m examples.rrg.main --config smoke           # seconds
  python -m examples.rrg.main --config k2 --methods ls,came,cagrad
  python -m examples.rrg.main --config r2gen --ann data/iu_xray/annotation.json \
      --images data/iu_xray/images --dataset iu_xray
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np

from examples.rrg import configs, plots, train

# (key in the metrics, column name in the table)
COLUMNS = (("ce_f1", "CE-F1"), ("ce_micro_f1", "CE-F1 (micro)"), ("BLEU_4", "BLEU-4"),
           ("ROUGE_L", "ROUGE-L"), ("CIDEr", "CIDEr"), ("train_time", "train time (s)"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.main", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="default", choices=sorted(configs.CONFIGS))
  p.add_argument("--methods", help="comma-separated, e.g. ls,came,cagrad (default: config's)")
  p.add_argument("--seeds", help="comma-separated ints, e.g. 0,1,2 (default: config's)")
  p.add_argument("--steps", type=int, help="training steps per run (default: config's)")
  p.add_argument("--out", default="runs/rrg", help="output directory")
  p.add_argument("--data", choices=("synthetic", "r2gen"), help="default: config's")
  p.add_argument("--ann", help="R2Gen annotation.json (with --data r2gen)")
  p.add_argument("--images", help="R2Gen image directory (with --data r2gen)")
  p.add_argument("--dataset", choices=("iu_xray", "mimic_cxr"), help="R2Gen dataset layout")
  p.add_argument("--labels", help="CSV of reference labels from an external labeler "
                 "(e.g. CheXbert); default: the rule-based labeler")
  p.add_argument("--checkpoint", type=int, default=0, metavar="EVERY",
                 help="save an Orbax checkpoint every EVERY steps under OUT/checkpoints and "
                 "resume from it when rerun (0: off)")
  p.add_argument("--meteor", action="store_true", help="also compute METEOR (needs Java)")
  p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
  return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> configs.Config:
  """The named config with the command-line overrides applied."""
  config = configs.get_config(args.config)
  changes = {}
  if args.methods:
    changes["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
  if args.seeds:
    try:
      changes["seeds"] = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError:
      raise SystemExit(f"--seeds must be comma-separated integers, got {args.seeds!r}")
  if args.steps is not None:
    if args.steps < 1:
      raise SystemExit(f"--steps must be >= 1, got {args.steps}")
    changes["num_steps"] = args.steps
  for flag, field in (("data", "data"), ("ann", "ann_path"), ("images", "image_dir"),
                      ("dataset", "dataset"), ("labels", "labels_path")):
    if getattr(args, flag):
      changes[field] = getattr(args, flag)
  if args.checkpoint:
    changes["checkpoint_every"] = args.checkpoint
  if args.meteor:
    changes["meteor"] = True
  config = dataclasses.replace(config, **changes)
  if not config.methods or not config.seeds:
    raise SystemExit("--methods and --seeds must not be empty")
  if config.data == "r2gen" and not (config.ann_path and config.image_dir):
    raise SystemExit("--data r2gen needs --ann PATH/annotation.json and --images DIR")
  for method in config.methods:  # fail before any training, not after the first method
    try:
      train.config_optimizer(config, method)
    except ValueError as e:
      raise SystemExit(str(e)) from None
  return config


def load_data(config: configs.Config):
  """``(splits, tokenizer)`` of the configured data."""
  from examples.rrg import input_pipeline  # pylint: disable=import-outside-toplevel

  if config.data == "synthetic":
    return input_pipeline.synthetic_dataset(
        config.num_train, config.num_val, config.num_test, image_size=config.image_size,
        max_len=config.max_len, seed=config.data_seed)
  return input_pipeline.load_r2gen(
      config.ann_path, config.image_dir, dataset=config.dataset, image_size=config.image_size,
      max_len=config.max_len, min_count=config.min_count, labels_path=config.labels_path)


def format_table(summary: dict, columns=COLUMNS) -> str:
  """Markdown table of ``mean ± std`` per method (``summary`` from ``train.summarize``)."""
  header = "| method | " + " | ".join(name for _, name in columns) + " |"
  rule = "|---|" + "---:|" * len(columns)
  rows = []
  for method, row in summary.items():
    cells = []
    for key, _ in columns:
      mean, std, _ = row[key]
      digits = 1 if key == "train_time" else 3
      cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}")
    rows.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join([header, rule, *rows])


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the job; returns what it writes to ``results.json``."""
  args = parse_args(argv)
  config = config_from_args(args)
  os.makedirs(args.out, exist_ok=True)
  wall0 = time.perf_counter()

  data, tokenizer = load_data(config)
  n = {name: split.images.shape[0] for name, split in data.items()}
  print(f"config={config.name} data={config.data} splits={n} vocab={tokenizer.vocab_size} "
        f"tasks={config.tasks} weights={config.task_weights} methods={config.methods} "
        f"seeds={config.seeds} steps={config.num_steps} backend={jax.default_backend()}",
        flush=True)

  results = train.run_all(
      config, data, tokenizer, methods=config.methods, seeds=config.seeds,
      progress=not args.no_progress,
      checkpoint_root=os.path.join(args.out, "checkpoints") if config.checkpoint_every else None)
  wall = time.perf_counter() - wall0

  keys = [k for k, _ in COLUMNS] + sorted(
      {k for r in results for k in r.metrics} - {k for k, _ in COLUMNS})
  summary = train.summarize(results, keys)
  table = format_table(summary)
  footer = (f"{len(config.seeds)} seeds ({', '.join(map(str, config.seeds))}), mean ± std; "
            f"config `{config.name}`, {config.num_steps} steps of batch {config.batch_size}, "
            f"{results[0].num_params:,} parameters; wall time {wall:.0f} s "
            f"({os.cpu_count()} CPU cores, {jax.default_backend()}).")
  print("\n" + table + "\n\n" + footer, flush=True)

  plot_path = os.path.join(args.out, "training_curves.png")
  plots.plot_training_curves(
      results, config.tasks, plot_path,
      title=f"RRG {config.name}: tasks {', '.join(config.tasks)}, weights {config.task_weights}")

  with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(f"# RRG `{config.name}` results\n\n{table}\n\n{footer}\n\n"
            f"![training curves](training_curves.png)\n")
  out = {
      "config": _jsonable(dataclasses.asdict(config)),
      "summary": {m: {k: {"mean": v[0], "std": v[1], "n": v[2]} for k, v in row.items()}
                  for m, row in summary.items()},
      "runs": [{"method": r.method, "seed": r.seed, "metrics": r.metrics,
                "train_time": r.train_time, "eval_time": r.eval_time,
                "num_params": r.num_params, "final_losses": _final_losses(r, config.tasks),
                "mean_diagnostics": _mean_diagnostics(r),
                "examples": [{"reference": tokenizer.decode(data["test"].tokens[i]),
                              "generated": r.hypotheses[i]} for i in range(3)]}
               for r in results],
      "wall_time": wall,
      "machine": {"cpus": os.cpu_count(), "backend": jax.default_backend(),
                  "python": sys.version.split()[0], "platform": platform.platform()},
  }
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2)
  # Every generated report, e.g. to label them with CheXbert and pass its labels back in.
  test = data["test"]
  for r in results:
    with open(os.path.join(args.out, f"reports_{r.method}_seed{r.seed}.json"), "w",
              encoding="utf-8") as f:
      json.dump([{"id": test.ids[i], "reference": tokenizer.decode(test.tokens[i]),
                  "generated": r.hypotheses[i]} for i in range(len(test.ids))], f, indent=1)
  print(f"wrote {args.out}/results.md, results.json, training_curves.png, "
        f"reports_<method>_seed<seed>.json", flush=True)
  return out


def _final_losses(result, tasks) -> dict:
  losses = result.history.get("losses")
  if losses is None or not len(losses):
    return {}
  tail = np.asarray(losses[-10:]).mean(0)
  return {t: float(v) for t, v in zip(tasks, tail)}


def _mean_diagnostics(result) -> dict:
  """Per-run means over training steps of the scalar diagnostics and the coefficients."""
  out = {}
  for key in ("drift_deg", "diffusion_decay", "energy_gain", "min_inner", "coefficients",
              "task_norms"):
    if key in result.history and len(result.history[key]):
      out[key] = np.asarray(result.history[key], np.float64).mean(0).tolist()
  return out


def _jsonable(x):
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  return x


if __name__ == "__main__":
  main()
