r"""One table over several finished jobs: a row per job, CAME-Grad against LS.

Reads each job's ``results.json`` (written by ``python -m examples.rrg.main --out DIR``) and
prints, per job, its backbone and parameters, and for a few metrics LS, CAME-Grad (mean ±
sample std over seeds) and the paired 95% interval of the difference, with the job's wall
time. The backbone x method table of ``examples/rrg/README.md`` is

  python -m examples.rrg.main --out runs/rrg                                  # encoder_decoder
  python -m examples.rrg.main --backbone r2gen --out runs/rrg_bb_r2gen
  python -m examples.rrg.main --backbone promptmrg --out runs/rrg_bb_promptmrg
  python -m examples.rrg.compare runs/rrg runs/rrg_bb_r2gen runs/rrg_bb_promptmrg
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from examples.rrg import stats

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


def main(argv: Sequence[str] | None = None) -> str:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.compare", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("jobs", nargs="+", help="output folders of finished jobs (--out)")
  args = p.parse_args(argv)
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
