r"""The main job: multi-task radiology report generation, methods x seeds.

Default: the paper's setting (K = 2 tasks ``[nll, cls]``, weights ``[1, 4]``), linear
scalarization vs CAME-Grad, 5 seeds, model selection on val CE-F1. Prints the tables (mean ±
sample std over seeds, the paired 95% interval of each method minus LS) and writes under
``--out``: ``results.md``, ``results.json``, ``training_curves.png`` and, per run,
``<method>_seed<seed>/`` with ``curves.csv``, ``curves.json``, TensorBoard event files,
``reports.json`` and ``metrics.json``.

  python -m examples.rrg.main                              # the paper's setting
  python -m examples.rrg.main --config k3                  # K = 3 (adds image-report alignment)
  python -m examples.rrg.main --methods all --seeds 0,1,2  # every method of the registry
  python -m examples.rrg.main --config smoke               # seconds
  python -m examples.rrg.main --config r2gen --data r2gen --ann data/iu_xray/annotation.json \
      --images data/iu_xray/images --dataset iu_xray
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from collections.abc import Sequence

import jax
import numpy as np

from examples.rrg import configs, models
from examples.rrg.data import r2gen
from examples.rrg.evaluation import plots
from examples.rrg.training import sweep

# flag -> (Config field, type); None type: a comma-separated tuple
_OVERRIDES = {
    "steps": ("num_steps", int), "lr": ("learning_rate", float),
    "batch_size": ("batch_size", int), "warmup_fraction": ("warmup_fraction", float),
    "rho": ("came_rho", float), "kappa": ("came_kappa", float), "nu": ("came_nu", float),
    "image_size": ("image_size", int), "max_len": ("max_len", int),
    "backbone": ("backbone", str), "eval_every": ("eval_every", int),
    "data": ("data", str), "ann": ("ann_path", str), "images": ("image_dir", str),
    "dataset": ("dataset", str), "labels": ("labels_path", str),
    "checkpoint": ("checkpoint_every", int), "bootstrap": ("bootstrap_samples", int),
    "mesh": ("mesh", str), "beam_size": ("beam_size", int),
    "length_penalty": ("length_penalty", float), "workers": ("workers", int),
    "recipe": ("recipe", str),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.main", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="default", choices=sorted(configs.CONFIGS))
  p.add_argument("--methods", help="comma-separated registry names, 'ls_tuned' or 'all' "
                 "(default: the config's)")
  p.add_argument("--seeds", help="comma-separated ints (default: the config's)")
  p.add_argument("--steps", type=int, help="the step budget of every run")
  p.add_argument("--lr", type=float, help="peak learning rate")
  p.add_argument("--batch-size", type=int)
  p.add_argument("--warmup-fraction", type=float, help="warmup as a fraction of --steps")
  p.add_argument("--recipe", choices=("default", "paper"),
                 help="the optimizer recipe: 'paper' is the paper's trainer (AdamW, weight "
                 "decay 0.05 on ndim >= 2 parameters, warmup from 1%% of the peak, LS clipped "
                 "by value 0.1), scaled to the step budget")
  p.add_argument("--task-weights", help="comma-separated, one per task")
  p.add_argument("--rho", type=float, help="CAME-Grad rho")
  p.add_argument("--kappa", type=float, help="CAME-Grad kappa")
  p.add_argument("--nu", type=float, help="CAME-Grad nu")
  p.add_argument("--image-size", type=int)
  p.add_argument("--max-len", type=int, help="report tokens, BOS and EOS included")
  p.add_argument("--beam-size", type=int, help="beam search width for the test reports "
                 "(1: greedy; the papers use 3)")
  p.add_argument("--length-penalty", type=float,
                 help="beam score log p / len**penalty (0: R2Gen's, 1: Hugging Face's)")
  p.add_argument("--backbone", choices=sorted(models.BACKBONES), help="model backbone")
  p.add_argument("--encoder", choices=sorted(models.ENCODERS), help="image encoder")
  p.add_argument("--encoder-checkpoint", metavar="PATH", help="initialise the image encoder "
                 "from a local .npz file or Orbax directory (models/pretrained.py)")
  p.add_argument("--workers", type=int, help="Grain worker processes reading training "
                 "batches (default 0: threads of the training process)")
  p.add_argument("--eval-every", type=int, help="val evaluation (model selection) period")
  p.add_argument("--out", default="runs/rrg", help="output directory")
  p.add_argument("--data", choices=("synthetic", "r2gen"))
  p.add_argument("--ann", help="R2Gen annotation.json (with --data r2gen)")
  p.add_argument("--images", help="R2Gen image directory (with --data r2gen)")
  p.add_argument("--dataset", choices=("iu_xray", "mimic_cxr"), help="R2Gen dataset layout")
  p.add_argument("--labels", help="CSV of an external labeler's labels (e.g. CheXbert): the cls "
                 "task's targets; CE still labels both sides with the rule-based labeler "
                 "(score reports.json with examples.rrg.evaluation.score for the external one)")
  p.add_argument("--checkpoint", type=int, metavar="EVERY",
                 help="save an Orbax checkpoint every EVERY steps and resume on rerun")
  p.add_argument("--bootstrap", type=int, help="bootstrap resamples of the intervals")
  p.add_argument("--mesh", help="train on a device mesh, e.g. data=2,fsdp=4 (batch over "
                 "data x fsdp, parameters over fsdp; see examples/rrg/training/sharding.py)")
  p.add_argument("--meteor", action="store_true", help="also compute METEOR (needs Java)")
  p.add_argument("--no-progress", action="store_true", help="no progress bars")
  p.add_argument("--probe", action="store_true", help="measure the LS runs on the first 512 "
                 "training studies at 6 checkpoints (conflict.full_batch_probe: task losses, "
                 "the cls loss of the label prior, full-batch encoder cosine, test AUROC)")
  p.add_argument("--tabulate", action="store_true", help="no training: print and rewrite "
                 "the tables from OUT/results.json")
  return p.parse_args(argv)


def _numbers(text: str, kind, flag: str) -> tuple:
  try:
    return tuple(kind(s) for s in text.split(",") if s.strip())
  except ValueError:
    raise SystemExit(f"{flag} must be comma-separated numbers, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> configs.Config:
  """The named config with the command-line overrides applied (errors exit with the reason)."""
  changes = {field: kind(getattr(args, flag)) for flag, (field, kind) in _OVERRIDES.items()
             if getattr(args, flag) is not None}
  if args.methods:
    changes["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
  if args.seeds:
    changes["seeds"] = _numbers(args.seeds, int, "--seeds")
  if args.task_weights:
    changes["task_weights"] = _numbers(args.task_weights, float, "--task-weights")
  if args.meteor:
    changes["meteor"] = True
  model_changes = {field: value for field, value in (
      ("encoder", args.encoder), ("encoder_checkpoint", args.encoder_checkpoint))
      if value is not None}
  try:
    config = dataclasses.replace(configs.get_config(args.config), **changes)
    if model_changes:
      config = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                     **model_changes))
    skipped: list[str] = []
    config = dataclasses.replace(config, methods=sweep.method_list(config.methods, config,
                                                                   skipped))
    for note in skipped:
      print(f"left out of 'all': {note}", flush=True)
  except ValueError as e:
    raise SystemExit(str(e)) from None
  if not config.seeds:
    raise SystemExit("--seeds must not be empty")
  if config.data == "r2gen" and not (config.ann_path and config.image_dir):
    raise SystemExit("--data r2gen needs --ann PATH/annotation.json and --images DIR")
  if config.data == "r2gen":
    # R2Gen's per-dataset settings (IU X-Ray: max_len 60, min_count 3; MIMIC-CXR: 100, 10),
    # unless --max-len says otherwise.
    defaults = r2gen.DATASET_DEFAULTS[config.dataset]
    config = dataclasses.replace(
        config, min_count=defaults.min_count,
        max_len=config.max_len if args.max_len is not None else defaults.max_len)
  return config


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the job; returns what it writes to ``results.json``.

  ``--tabulate`` trains nothing: it reads ``OUT/results.json`` (plain JSON, so a results file
  from a shared folder runs no code when read) and prints and rewrites ``results.md`` from it.
  """
  args = parse_args(argv)
  config = config_from_args(args)
  os.makedirs(args.out, exist_ok=True)
  saved = os.path.join(args.out, "results.json")
  if args.tabulate:
    if not os.path.exists(saved):
      raise SystemExit(f"--tabulate: no {saved} (run the job into --out {args.out} first)")
    with open(saved, encoding="utf-8") as f:
      out = json.load(f)
    markdown = sweep.render(out)
    machine = _machine_line(out.get("machine", {}))
    print("\n" + markdown + f"\n\nMachine: {machine}.", flush=True)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
      f.write(f"# RRG `{out['config']['name']}` results\n\n{markdown}\n\nMachine: "
              f"{machine}.\n")
    return out
  print(f"config={config.name} tasks={config.tasks} weights={config.task_weights} "
        f"methods={config.methods} seeds={config.seeds} steps={config.num_steps} "
        f"backend={jax.default_backend()}", flush=True)
  probe = {}
  if args.probe:
    from examples.rrg import conflict  # pylint: disable=import-outside-toplevel
    from examples.rrg.training import train  # pylint: disable=import-outside-toplevel
    data = train.load_data(config)
    probe = {"data": data, "probe": conflict.full_batch_probe(config, data[0]),
             "probe_steps": conflict.probe_steps(config)}
  result = sweep.run(config, args.out, progress=not args.no_progress, **probe)
  out = sweep.results(result)
  for run, r in zip(out["runs"], result.runs):
    run["final_losses"] = _final_losses(r, config.tasks)
  out["machine"] = {"cpus": os.cpu_count(), "backend": jax.default_backend(),
                    "load_average": os.getloadavg()[0], "python": sys.version.split()[0],
                    "platform": platform.platform()}
  markdown = sweep.render(out)
  machine = _machine_line(out["machine"])
  print("\n" + markdown + f"\n\nMachine: {machine}.", flush=True)

  plots.plot_training_curves(
      result.runs, config.tasks, os.path.join(args.out, "training_curves.png"),
      title=f"RRG {config.name}: tasks {', '.join(config.tasks)}, weights "
            f"{list(config.task_weights)}")
  with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(f"# RRG `{config.name}` results\n\n{markdown}\n\nMachine: {machine}.\n\n"
            "![training curves](training_curves.png)\n")
  with open(saved, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  print(f"wrote {args.out}/results.md, results.json, training_curves.png and "
        f"<method>_seed<seed>/ per run", flush=True)
  return out


def _machine_line(machine: dict) -> str:
  if not machine:
    return "not recorded"
  return (f"{machine['cpus']} CPU cores, {machine['backend']}, load average "
          f"{machine['load_average']:.1f} at the end")


def _final_losses(result, tasks) -> dict:
  losses = result.history.get("losses")
  if losses is None or not len(losses):
    return {}
  return {t: float(v) for t, v in zip(tasks, np.asarray(losses[-10:]).mean(0))}


if __name__ == "__main__":
  main()
