r"""One table over several finished jobs: a row per job, CAME-Grad against LS.

Reads each job's ``results.json`` (written by ``python -m examples.rrg.main --out DIR``) and
prints, per job, its backbone and parameters, and for a few metrics LS, CAME-Grad (mean ±
sample std over seeds) and the paired 95% interval of the difference, with the job's wall
time. The backbone x method table of ``examples/rrg/README.md`` is

  python -m examples.rrg.main --out runs/rrg                                  # encoder_decoder
  python -m examples.rrg.main --backbone r2gen --out runs/rrg_bb_r2gen
  python -m examples.rrg.main --backbone promptmrg --out runs/rrg_bb_promptmrg
  python -m examples.rrg.compare runs/rrg runs/rrg_bb_r2gen runs/rrg_bb_promptmrg

``--per-run`` instead reads every run's ``<method>_seed<seed>/metrics.json`` under the folders
(for instance several partial sweeps of the same config) and prints one row per method: the
test metrics as mean ± sample std over seeds and the seed-paired CE-F1 difference to LS (its
mean and range over seeds; the study-level bootstrap needs the sweep's per-study outputs).

``--results FILE`` prints the tables of one committed result file: a ``results.json`` of
``main`` (every table of ``sweep.render``) or a ``conflict.json`` of ``conflict`` (its table).
The tables in ``examples/rrg/README.md`` and the top ``README.md`` are these outputs, each
under the command that prints it, and ``tests/rrg/test_readme_results.py`` checks that they
still are:

  python -m examples.rrg.compare --results examples/rrg/results/default/results.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections.abc import Sequence

import numpy as np

from examples.rrg.evaluation import stats
from examples.rrg.training import train

METRICS = (("ce_f1", "CE-F1 macro"), ("ce_example_f1", "CE-F1 example"), ("BLEU_4", "BLEU-4"))


def _cell(entry: dict) -> str:
  std = entry.get("std")
  return f"{entry['mean']:.3f}" if std is None else f"{entry['mean']:.3f} ± {std:.3f}"


def row(results: dict, *, compared: str = "came", baseline: str = "ls") -> list[str]:
  """The cells of one job's row (see `table`)."""
  summary, intervals = results["summary"], results["intervals"]
  for method in (compared, baseline):
    if method not in summary:
      raise ValueError(f"the job has no {method!r} runs (methods: {sorted(summary)})")
  config = results["config"]
  cells = [config.get("backbone", "encoder_decoder"), f"{results['runs'][0]['num_params']:,}",
           str(summary[baseline]["ce_f1"]["n"])]
  for key, _ in METRICS:
    ci = intervals[compared][key]
    cells += [_cell(summary[baseline][key]), _cell(summary[compared][key]),
              f"{ci['diff']:+.3f} {stats.format_interval(ci['low'], ci['high'])}"]
  return cells + [f"{results['wall_time']:.0f}"]


def table(jobs: Sequence[dict]) -> str:
  """Markdown: one row per job's ``results.json`` contents."""
  head = ["backbone", "parameters", "seeds"]
  for _, name in METRICS:
    head += [f"{name} LS", f"{name} CAME", f"{name} CAME − LS [95% CI]"]
  head.append("job wall (s)")
  lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
  lines += ["| " + " | ".join(row(job)) + " |" for job in jobs]
  return "\n".join(lines)


PER_RUN = (("ce_f1", "CE-F1 macro"), ("ce_example_f1", "CE-F1 example"),
           ("ce5_macro_f1", "CE-F1 macro-5"), ("BLEU_4", "BLEU-4"), ("CIDEr", "CIDEr"))


def per_run_table(folders: Sequence[str], baseline: str = "ls") -> str:
  """Markdown: one row per method found in ``folders/<method>_seed<seed>/metrics.json``."""
  runs: dict[str, dict[int, dict]] = {}
  for folder in folders:
    for path in sorted(glob.glob(os.path.join(folder, "*_seed*", "metrics.json"))):
      with open(path, encoding="utf-8") as f:
        m = json.load(f)
      runs.setdefault(m["method"], {})[m["seed"]] = m
  if baseline not in runs:
    raise ValueError(f"no {baseline!r} runs under {list(folders)}")
  rank = {name: i for i, name in enumerate(train.method_names())}
  order = sorted(runs, key=lambda name: (name != baseline, rank.get(name, len(rank)), name))
  head = ["method", "seeds", *(t for _, t in PER_RUN),
          "CE-F1 macro − LS, mean over seeds [min, max]", "step ms", "selected step"]
  lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
  base = runs[baseline]
  for name in order:
    seeds = sorted(runs[name])
    cells = []
    for key, _ in PER_RUN:
      values = np.array([runs[name][s]["test"][key] for s in seeds])
      cells.append(f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1
                   else f"{values[0]:.3f}")
    diffs = [runs[name][s]["test"]["ce_f1"] - base[s]["test"]["ce_f1"] for s in seeds
             if s in base]
    diff = ("-" if name == baseline or not diffs else
            f"{np.mean(diffs):+.3f} [{min(diffs):+.3f}, {max(diffs):+.3f}]")
    step = 1e3 * np.mean([runs[name][s]["step_time"] for s in seeds])
    selected = np.mean([runs[name][s]["selected_step"] for s in seeds])
    lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) +
                 f" | {diff} | {step:.0f} | {selected:.0f} |")
  return "\n".join(lines)


def results_markdown(path: str, *, headline: bool = False) -> str:
  """The tables of a committed result file (see the module docstring); ``headline``: the
  short table of the top README (:func:`headline_main`, :func:`headline_conflict`)."""
  from examples.rrg import conflict  # pylint: disable=import-outside-toplevel
  from examples.rrg.training import sweep  # pylint: disable=import-outside-toplevel

  if not os.path.exists(path):
    raise SystemExit(f"{path} does not exist")
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  if "rows" in data:
    if headline:
      return headline_conflict(data)
    return (conflict.table(data["rows"], data["settings"]) + "\n\n"
            + conflict.settings_table(data["settings"]) + "\n\n" + conflict.footer(data))
  return headline_main(data) if headline else sweep.render(data)


HEADLINE = (("ce_f1", "CE-F1 macro (14 obs., pos+unc)"),
            ("ce_example_f1", "CE-F1 example-based (PromptMRG)"),
            ("ce5_micro_f1", "CE-F1 micro, 5 obs."), ("BLEU_4", "BLEU-4"), ("CIDEr", "CIDEr"))


def headline_main(data: dict, compared: str = "came", baseline: str = "ls") -> str:
  """Metric | LS | compared | difference [95% CI] | per-seed differences, from results.json."""
  summary, cis = data["summary"], data["intervals"][compared]
  seeds = data["config"]["seeds"]
  by = {(r["method"], r["seed"]): r["metrics"] for r in data["runs"]}
  lines = [f"| metric | LS | {compared} | {compared} − LS [95% CI] | per seed ("
           f"{len(seeds)} seeds) |", "|---|---:|---:|---:|---|"]
  for key, title in HEADLINE:
    ci = cis[key]
    per_seed = ", ".join(f"{by[(compared, s)][key] - by[(baseline, s)][key]:+.3f}"
                         for s in seeds if (compared, s) in by and (baseline, s) in by)
    lines.append(f"| {title} | {_cell(summary[baseline][key])} | "
                 f"{_cell(summary[compared][key])} | {ci['diff']:+.3f} "
                 f"{stats.format_interval(ci['low'], ci['high'])} | {per_seed} |")
  return "\n".join(lines)


def headline_conflict(data: dict) -> str:
  """Every method's CE-F1 difference to LS at the lowest and the highest measured conflict."""
  by_value = {s["value"]: s["ls_full_batch"]["full_batch_encoder_cosine"]
              for s in data["settings"]}
  ends = sorted({max(by_value, key=by_value.get), min(by_value, key=by_value.get)})
  lines = ["| dial | full-batch encoder cosine (LS) | method | seeds | CE-F1 − LS [95% CI] | "
           "per seed |", "|---|---:|---|---:|---:|---|"]
  for value in ends:
    ls = next(r for r in data["rows"] if r["value"] == value and r["method"] == "ls")
    for r in data["rows"]:
      if r["value"] != value or r["method"] == "ls":
        continue
      per_seed = ", ".join(f"{v - ls['per_seed']['ce_f1'][s]:+.3f}"
                           for s, v in r["per_seed"]["ce_f1"].items()
                           if s in ls["per_seed"]["ce_f1"])
      lines.append(f"| {data['knob']} {value:g} | {by_value[value]:+.3f} | {r['method']} | "
                   f"{r['seeds']} | {r['ce_f1_diff']:+.3f} "
                   f"{stats.format_interval(r['ce_f1_low'], r['ce_f1_high'])} | {per_seed} |")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.compare", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("jobs", nargs="*", help="output folders of finished jobs (--out)")
  p.add_argument("--results", metavar="FILE", help="print the tables of one results.json or "
                 "conflict.json")
  p.add_argument("--headline", action="store_true", help="with --results: the short table "
                 "of the top README")
  p.add_argument("--per-run", action="store_true",
                 help="one row per method from the runs' metrics.json files")
  args = p.parse_args(argv)
  if args.results:
    md = results_markdown(args.results, headline=args.headline)
    print(md)
    return md
  if not args.jobs:
    raise SystemExit("name the jobs' folders, or --results FILE")
  if args.per_run:
    try:
      md = per_run_table(args.jobs)
    except ValueError as e:
      raise SystemExit(str(e)) from None
    print(md)
    return md
  jobs = []
  for folder in args.jobs:
    path = os.path.join(folder, "results.json")
    if not os.path.exists(path):
      raise SystemExit(f"{path} does not exist: run python -m examples.rrg.main --out {folder}")
    with open(path, encoding="utf-8") as f:
      jobs.append(json.load(f))
  try:
    md = table(jobs)
  except (KeyError, ValueError) as e:
    raise SystemExit(f"cannot tabulate: {e}") from None
  print(md)
  return md


if __name__ == "__main__":
  main()
