"""Methods x seeds: every run of a sweep, the summary over seeds, the paired intervals, the tables.

:func:`run` trains ``config.methods`` for ``config.seeds`` with ``train.train_and_evaluate``
(one compiled train step per method, shared by its seeds), times the plain LS trainer (one
backward pass of ``sum_k w_k L_k``) for the per-step time ratio, and handles ``ls_tuned``: LS
trained at every cls weight of ``config.ls_tune_grid``, the weight with the best mean val CE-F1
over seeds selected (its test metrics reported; the grid's extra runs are its cost).
:func:`report` turns the runs into Markdown tables: mean ± sample std over seeds for every
metric, the paired 95% bootstrap interval of each method minus LS, positive test studies and F1
per observation, and the timings.

Example::

  config = dataclasses.replace(configs.smoke(), methods=("ls", "came"))
  sweep = run(config, "/tmp/rrg")
  print(report(sweep).markdown)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from examples.rrg.evaluation import metrics, per_study, stats
from examples.rrg.evaluation.labeler import OBSERVATIONS
from examples.rrg.training import train

LS_TUNED = "ls_tuned"
REFERENCE = "ls"  # differences and their intervals are against this method

# (key, column title) of the main table: the F1 of each CE convention, then language metrics.
COLUMNS = (*metrics.CE_F1_COLUMNS, ("BLEU_4", "BLEU-4"), ("ROUGE_L", "ROUGE-L"),
           ("CIDEr", "CIDEr"))
# Metrics with a paired bootstrap interval (recomputed from per-study outputs).
INTERVAL_KEYS = (*(key for key, _ in metrics.CE_F1_COLUMNS), "BLEU_4", "ROUGE_L", "CIDEr")


def method_list(names: Sequence[str], config=None,
                skipped: list[str] | None = None) -> tuple[str, ...]:
  """``names`` with ``"all"`` expanded to every registry method and ``ls_tuned``; checked.

  With ``config``, a method that cannot run with its tasks (``train.why_not``: Krum and the
  trimmed mean need K >= 3) is an error when named, and left out of ``"all"`` with its reason
  appended to ``skipped``.

  Raises:
    ValueError: an unknown name, a named method that cannot run, or an empty list.
  """
  known = train.method_names()
  out: list[str] = []
  for name in names:
    expanded = name == "all"
    for n in (known + (LS_TUNED,) if expanded else (name,)):
      if n not in known and n != LS_TUNED:
        raise ValueError(f"unknown method {n!r}; expected 'all', {LS_TUNED!r} or one of {known}")
      reason = None if config is None or n == LS_TUNED else train.why_not(config, n)
      if reason is not None:
        if not expanded:
          raise ValueError(f"method {n!r} cannot run with tasks {config.tasks}: {reason}")
        if skipped is not None:
          skipped.append(f"{n}: {reason}")
        continue
      if n not in out:
        out.append(n)
  if not out:
    raise ValueError("methods must not be empty")
  return tuple(out)


@dataclasses.dataclass
class Sweep:
  """Every run of a sweep and what it cost."""

  config: Any
  runs: list
  """``train.RunResult`` of every method and seed (``ls_tuned``: the runs at the selected
  weight, relabelled)."""
  plain_ls_step_time: float
  """Seconds per step of the plain LS trainer."""
  tuning: dict
  """``ls_tuned``: ``{"grid", "val_ce_f1" (per weight), "selected", "extra_runs",
  "extra_train_time"}``; empty without ``ls_tuned``."""
  wall_time: float


def _with_cls_weight(config, weight: float):
  weights = list(config.task_weights)
  weights[config.tasks.index("cls")] = weight
  return dataclasses.replace(config, task_weights=tuple(weights))


def run(config, workdir: str, *, data: tuple[dict, Any] | None = None,
        progress: bool = True, probe: Any = None, probe_steps: Sequence[int] = (),
        probed: Sequence[str] = (REFERENCE,)) -> Sweep:
  """Trains and tests every method of ``config.methods`` for every seed of ``config.seeds``.

  ``probe`` (see ``train.train_and_evaluate``) measures the runs of the methods in ``probed``
  (LS by default: its update is the joint gradient) after each step of ``probe_steps``.
  """
  wall0 = time.perf_counter()
  methods = method_list(config.methods)
  data = train.load_data(config) if data is None else data
  runs: list = []
  cache: dict = {}  # (method, task weights) -> runs, so that ls_tuned reuses LS at w

  def runs_of(cfg, name: str, folder: str) -> list:
    key = (name, tuple(cfg.task_weights))
    if key not in cache:
      cfg = dataclasses.replace(cfg, method=name)
      method = train.make_method(cfg)  # one object: one compiled step for all seeds
      measure = probe is not None and name in probed
      cache[key] = [train.train_and_evaluate(dataclasses.replace(cfg, seed=s), folder,
                                             data=data, method=method, progress=progress,
                                             probe=probe if measure else None,
                                             probe_steps=probe_steps)
                    for s in config.seeds]
    return cache[key]

  tuning: dict = {}
  for name in methods:
    if name != LS_TUNED:
      runs.extend(runs_of(config, name, workdir))
      continue
    if "cls" not in config.tasks:
      raise ValueError(f"{LS_TUNED} tunes the cls weight, but tasks are {config.tasks}")
    val, extra = {}, []
    for weight in config.ls_tune_grid:
      cfg = _with_cls_weight(config, weight)
      fresh = (REFERENCE, tuple(cfg.task_weights)) not in cache
      grid_runs = runs_of(cfg, REFERENCE, f"{workdir}/{LS_TUNED}/cls_weight_{weight:g}")
      if fresh:
        extra.extend(grid_runs)
      val[weight] = float(np.mean([max(v for _, v in r.val_curve) for r in grid_runs]))
    selected = max(val, key=lambda w: (val[w], -abs(w - config.task_weights[
        config.tasks.index("cls")])))
    runs.extend(dataclasses.replace(r, method=LS_TUNED)
                for r in cache[(REFERENCE, tuple(_with_cls_weight(config, selected)
                                                  .task_weights))])
    tuning = {"grid": list(config.ls_tune_grid), "val_ce_f1": val, "selected": selected,
              "extra_runs": len(extra), "extra_train_time": sum(r.train_time for r in extra)}
  plain = train.time_per_step(dataclasses.replace(config, method=REFERENCE),
                              train.make_method(config, "ls_plain"), data,
                              config.timing_steps)
  return Sweep(config=config, runs=runs, plain_ls_step_time=plain, tuning=tuning,
               wall_time=time.perf_counter() - wall0)


# ------------------------------------------------------------------------------------------------
# Summaries and tables
# ------------------------------------------------------------------------------------------------
def _value(run, key: str) -> float:
  if key in ("train_time", "compile_time", "step_time", "eval_time", "selected_step"):
    return float(getattr(run, key))
  return float(run.metrics.get(key, np.nan))


def summarize(runs: Sequence, keys: Sequence[str]) -> dict[str, dict[str, tuple]]:
  """``{method: {key: (mean, sample std or None, n)}}`` over seeds."""
  table: dict[str, dict[str, tuple]] = {}
  for method in dict.fromkeys(r.method for r in runs):
    of_method = [r for r in runs if r.method == method]
    table[method] = {}
    for key in keys:
      values = [_value(r, key) for r in of_method]
      if not np.all(np.isnan(values)):
        table[method][key] = stats.mean_std(values)
  return table


def intervals(runs: Sequence, method: str, *, reference: str = REFERENCE,
              num_samples: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
  """Paired bootstrap of ``method`` minus ``reference`` over the seeds both have run."""
  by_seed = {m: {r.seed: r for r in runs if r.method == m} for m in (method, reference)}
  seeds = sorted(by_seed[method].keys() & by_seed[reference].keys())
  if not seeds:
    raise ValueError(f"no seed was run with both {method!r} and {reference!r}")
  ci = stats.paired_bootstrap(
      [by_seed[reference][s].outputs for s in seeds], [by_seed[method][s].outputs for s in seeds],
      per_study.resampled_metrics, num_studies=len(by_seed[method][seeds[0]].outputs),
      num_samples=num_samples, seed=seed)
  return {key: ci[key] for key in INTERVAL_KEYS if key in ci}


#: How the intervals of a results file were computed: ``crossed`` by
#: :func:`stats.paired_bootstrap` (seed and study levels) when the runs' per-study outputs were
#: at hand; ``seed_t`` by :func:`stats.seed_t_interval` from the per-seed metrics in the file.
INTERVAL_METHODS = ("crossed", "seed_t")


def interval_note(data: dict) -> str:
  """How the file's 95% intervals were computed, in words for a table's caption."""
  if data.get("interval_method", "crossed") == "seed_t":
    return ("paired t interval over the per-seed differences (`stats.seed_t_interval`; the seed "
            "level only: this file predates the crossed bootstrap and keeps no per-study outputs)")
  return ("crossed bootstrap of `stats.paired_bootstrap` (seed level as a t interval, study "
          "level from one study resample shared by every seed)")


def seed_level_intervals(data: dict) -> dict:
  """A results file's intervals recomputed at the seed level from its own per-seed metrics.

  For files written before the crossed bootstrap, whose intervals came from a nested bootstrap
  that is too narrow when every seed sees the same test studies, and whose per-study outputs
  were not kept: every interval becomes :func:`stats.seed_t_interval` of the per-seed paired
  differences (``interval_method: "seed_t"``). ``results.json`` (``runs``) and ``conflict.json``
  (``rows`` with ``per_seed``) are both handled; the input is not changed.
  """
  data = json.loads(json.dumps(data))
  if "runs" in data:
    by = {(r["method"], r["seed"]): r["metrics"] for r in data["runs"]}
    for method, keys in data["intervals"].items():
      seeds = [s for (m, s) in by if m == method and (REFERENCE, s) in by]
      for key in keys:
        keys[key] = stats.seed_t_interval(
            [by[(method, s)][key] - by[(REFERENCE, s)][key] for s in seeds])
  for row in data.get("rows", []):
    if row["method"] == REFERENCE:
      continue
    ls = next(r for r in data["rows"] if r["value"] == row["value"] and r["method"] == REFERENCE)
    for key, values in row["per_seed"].items():
      if f"{key}_low" in row:
        ci = stats.seed_t_interval([v - ls["per_seed"][key][s] for s, v in values.items()
                                    if s in ls["per_seed"][key]])
        row[f"{key}_diff"], row[f"{key}_low"], row[f"{key}_high"] = (
            ci["diff"], ci["low"], ci["high"])
  data["interval_method"] = "seed_t"
  return data


def _cell(summary_row: dict, key: str, digits: int = 3) -> str:
  if key not in summary_row:
    return "-"
  entry = summary_row[key]
  mean, std = entry["mean"], entry["std"]
  return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


@dataclasses.dataclass
class Report:
  """The tables of a sweep, as Markdown and as data for ``results.json``."""

  markdown: str
  summary: dict
  intervals: dict


def results(sweep: Sweep) -> dict:
  """What ``results.json`` holds: the config, the summary over seeds (``{method: {key: {"mean",
  "std", "n"}}}``), every method's paired intervals against LS, the ``ls_tuned`` selection,
  the plain LS step time, and every run's test metrics (the per-seed values) and timings.
  :func:`render` makes the tables from it alone."""
  config, runs = sweep.config, sweep.runs
  methods = list(dict.fromkeys(r.method for r in runs))
  keys = [k for k, _ in COLUMNS] + ["selected_step", "train_time", "compile_time", "step_time"]
  summary = summarize(runs, keys + sorted({k for r in runs for k in r.metrics} - set(keys)))
  cis = {}
  if REFERENCE in methods:
    for m in methods:
      if m != REFERENCE:
        cis[m] = intervals(runs, m, num_samples=config.bootstrap_samples)
  return {
      "config": dataclasses.asdict(config),
      "summary": {m: {k: {"mean": v[0], "std": v[1], "n": v[2]} for k, v in row.items()}
                  for m, row in summary.items()},
      "intervals": cis,
      "interval_method": "crossed",
      "ls_tuned": {k: (v if k != "val_ce_f1" else {str(w): x for w, x in v.items()})
                   for k, v in sweep.tuning.items()},
      "plain_ls_step_time": sweep.plain_ls_step_time,
      "num_test_studies": len(runs[0].outputs),
      "runs": [{"method": r.method, "seed": r.seed, "task_weights": list(r.task_weights),
                "metrics": r.metrics, "selected_step": r.selected_step,
                "val_curve": r.val_curve, "train_time": r.train_time,
                "compile_time": r.compile_time, "step_time": r.step_time,
                "eval_time": r.eval_time, "num_params": r.num_params,
                "resumed_from": r.resumed_from,
                **({"probes": r.probes} if r.probes else {})} for r in runs],
      "wall_time": sweep.wall_time,
  }


def report(sweep: Sweep, *, compared: str = "came") -> Report:
  """Markdown tables of a sweep (see the module docstring): :func:`render` of :func:`results`."""
  data = results(sweep)
  return Report(markdown=render(data, compared=compared), summary=data["summary"],
                intervals=data["intervals"])


def render(data: dict, *, compared: str = "came") -> str:
  """The Markdown tables of a sweep from what ``results.json`` holds (:func:`results`).

  ``compared`` is the method of the per-observation table and of the detailed interval table
  (every method's CE-F1 interval against LS is in the main table).
  """
  config, summary, cis = data["config"], data["summary"], data["intervals"]
  methods = list(summary)
  seeds = list(config["seeds"])
  lines = []

  # Main table: every method, mean ± sample std, CE-F1 minus LS with its interval.
  header = ["method", *(title for _, title in COLUMNS), "CE-F1 macro − LS [95% CI]",
            "selected step", "step time / plain LS"]
  lines += [_row(header), "|---|" + "---:|" * (len(header) - 1)]
  plain = data["plain_ls_step_time"]
  for m in methods:
    row = summary[m]
    diff = "-" if m not in cis else (
        f"{cis[m]['ce_f1']['diff']:+.3f} "
        f"{stats.format_interval(cis[m]['ce_f1']['low'], cis[m]['ce_f1']['high'])}")
    ratio = row["step_time"]["mean"] / plain
    lines.append(_row([m, *(_cell(row, k) for k, _ in COLUMNS), diff,
                       _cell(row, "selected_step", 0), f"{ratio:.2f}"]))
  lines.append("")
  lines.append(_footer(data, len(seeds)))

  # Per seed: CE-F1 macro of every method, and its difference to LS.
  runs = data["runs"]
  by = {(r["method"], r["seed"]): r["metrics"]["ce_f1"] for r in runs}
  lines += ["", "CE-F1 macro per seed (difference to LS in brackets):", "",
            _row(["method", *(f"seed {s}" for s in seeds)]), "|---|" + "---:|" * len(seeds)]
  for m in methods:
    cells = []
    for s in seeds:
      if (m, s) not in by:
        cells.append("-")
      elif m == REFERENCE or (REFERENCE, s) not in by:
        cells.append(f"{by[(m, s)]:.3f}")
      else:
        cells.append(f"{by[(m, s)]:.3f} ({by[(m, s)] - by[(REFERENCE, s)]:+.3f})")
    lines.append(_row([m, *cells]))

  # Probed runs (main --probe): the cls task against its label prior, the classifier's AUROC.
  probed = [r for r in runs if r.get("probes")]
  if probed:
    last = probed[0]["probes"][-1][1]
    frequent = [k for k in last["auroc"] if k != "mean"]
    lines += ["", f"Probed runs at step {probed[0]['probes'][-1][0]}, on the first "
              f"{last['num_studies']} training studies (full batch): the cls loss against the "
              "cls loss of the label frequencies (the prior), and the classifier's test AUROC "
              "(positive or uncertain) on the frequent observations; the full-batch cosine of "
              "the nll and cls gradients on the encoder, mean over the checkpoints "
              f"{[step for step, _ in probed[0]['probes']]}:", "",
              _row(["run", "cls loss", "prior", "below prior", *(f"AUROC {k}" for k in frequent),
                    "AUROC mean", "encoder cosine"]),
              "|---|" + "---:|" * (5 + len(frequent))]
    for r in probed:
      p = r["probes"][-1][1]
      cls, prior = p["losses"]["cls"], p["losses"]["cls_prior"]
      cosine = np.mean([q["encoder"]["cosine"] for _, q in r["probes"]])
      lines.append(_row([f"{r['method']} seed {r['seed']}", f"{cls:.3f}", f"{prior:.3f}",
                         f"{100 * (1 - cls / prior):.0f}%",
                         *(f"{p['auroc'][k]:.3f}" for k in frequent),
                         f"{p['auroc']['mean']:.3f}", f"{cosine:+.3f}"]))

  # Paired intervals of the compared method minus LS, every interval metric.
  if compared in cis:
    lines += ["", f"**{compared} minus {REFERENCE}**, 95% interval: {interval_note(data)}:",
              "",
              _row(["metric", REFERENCE, compared, "difference", "95% CI"]),
              "|---|---:|---:|---:|---:|"]
    titles: dict[str, str] = dict(COLUMNS)
    for key, ci in cis[compared].items():
      lines.append(_row([titles.get(key) or key, _cell(summary[REFERENCE], key),
                         _cell(summary[compared], key), f"{ci['diff']:+.3f}",
                         stats.format_interval(ci["low"], ci["high"])]))

  # Per observation: positive (or uncertain) test studies next to F1.
  shown = [m for m in (REFERENCE, compared) if m in summary]
  if shown and f"ce_support/{OBSERVATIONS[0]}" in summary[shown[0]]:
    lines += ["", "Per observation (convention (a)): test studies where the reference has it "
              "(positive or uncertain) and F1, mean ± std over seeds:", "",
              _row(["observation", "test positives", *(f"F1 {m}" for m in shown)]),
              "|---|---:|" + "---:|" * len(shown)]
    for name in OBSERVATIONS:
      support = summary[shown[0]][f"ce_support/{name}"]["mean"]
      lines.append(_row([name, f"{support:.0f}",
                         *(_cell(summary[m], f"ce_f1/{name}") for m in shown)]))

  # Timings.
  lines += ["", "Time: compilation (the first step of a method's first seed; the other seeds "
            "reuse it) apart; train time per run is the training steps alone (no compilation, "
            "no evaluation), mean ± std over seeds.", "",
            _row(["method", "compile (s)", "train per run (s)", "per step (ms)",
                  "ratio to plain LS"]), "|---|---:|---:|---:|---:|"]
  for m in methods:
    row = summary[m]
    compile_total = sum(r["compile_time"] for r in runs if r["method"] == m)
    lines.append(_row([m, f"{compile_total:.1f}", _cell(row, "train_time", 1),
                       f"{1e3 * row['step_time']['mean']:.1f}",
                       f"{row['step_time']['mean'] / plain:.2f}"]))
  lines.append(_row(["plain LS (one backward pass)", "-", "-", f"{1e3 * plain:.1f}", "1.00"]))
  if data.get("ls_tuned"):
    t = data["ls_tuned"]
    grid = ", ".join(f"{float(w):g}: {v:.3f}" for w, v in t["val_ce_f1"].items())
    lines += ["", f"`{LS_TUNED}`: cls weight selected on val from the grid {{{grid}}} (mean "
              f"best val CE-F1 over seeds): **{t['selected']:g}**; cost {t['extra_runs']} extra "
              f"LS runs, {t['extra_train_time']:.0f} s of training."]
  return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
  return "| " + " | ".join(cells) + " |"


def _footer(data: dict, n_seeds: int) -> str:
  config = data["config"]
  spread = "mean ± sample std (ddof=1)" if n_seeds > 1 else "one seed, no std"
  seeds = f"{n_seeds} seed{'s' if n_seeds > 1 else ''} ({', '.join(map(str, config['seeds']))})"
  recipe = "" if config.get("recipe", "default") == "default" else (
      f", recipe `{config['recipe']}`")
  resumed = ", ".join(f"{r['method']} seed {r['seed']} from step {r['resumed_from']}"
                      for r in data["runs"] if r.get("resumed_from"))
  return (f"{seeds}, {spread}; config "
          f"`{config['name']}`: tasks {list(config['tasks'])}, weights "
          f"{list(config['task_weights'])}, {config['num_steps']} steps of batch "
          f"{config['batch_size']}{recipe}, model selected on val CE-F1 every "
          f"{config['eval_every']} steps, {data['runs'][0]['num_params']:,} parameters; "
          f"{data['num_test_studies']} test studies; sweep wall time {data['wall_time']:.0f} s."
          + (f" Resumed from checkpoints: {resumed}." if resumed else "")
          + _labeler_note(config))


def _labeler_note(config: dict) -> str:
  """Which labeler read each side of the CE tables (never a mix)."""
  if not config.get("labels_path"):
    return " CE: both sides labelled by the rule-based labeler."
  return (f" CE: both sides labelled by the rule-based labeler; the cls task trained on "
          f"{config['labels_path']}. To score with that labeler, label each run's reports.json "
          "with it and run python -m examples.rrg.evaluation.score --hyp-labels ... --ref-labels ....")
