"""The benchmarks README shows exactly the tables ``python -m benchmarks.report`` prints."""

import contextlib
import io
from pathlib import Path

import pytest

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]


def markdown_tables(text: str) -> list[str]:
  """Every Markdown table of ``text`` (runs of lines starting with ``|``), stripped."""
  tables, current = [], []
  for line in text.splitlines() + [""]:
    if line.startswith("|"):
      current.append(line.rstrip())
    elif current:
      tables.append("\n".join(current))
      current = []
  return tables


def report_output() -> str:
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    report.main([])
  return out.getvalue()


def test_readme_tables_are_the_report_tables():
  pytest.importorskip("flax")  # the MultiDigits table is formatted by benchmarks.multidigits
  readme = markdown_tables((ROOT / "benchmarks" / "README.md").read_text())
  printed = markdown_tables(report_output())
  missing = [t.splitlines()[0] for t in readme if t not in printed]
  assert not missing, (
      "tables of benchmarks/README.md that `python -m benchmarks.report` does not print "
      f"(paste its output): {missing}")
  absent = [t.splitlines()[0] for t in printed if t not in readme]
  assert not absent, f"tables `python -m benchmarks.report` prints that the README lacks: {absent}"


def test_markdown_tables_splits_on_non_table_lines():
  text = "a\n| x |\n|---|\n| 1 |\n\n| y |\n|---|\nb\n"
  assert markdown_tables(text) == ["| x |\n|---|\n| 1 |", "| y |\n|---|"]


def test_figures_come_with_their_file():
  for line in report.figures(ROOT / "benchmarks" / "results"):
    assert ".json" in line


def test_scaling_ratios_pair_the_methods_at_each_device_count():
  pytest.importorskip("flax")  # bench_scaling imports bench_comm (the RRG example's model)
  from benchmarks import bench_scaling
  t = lambda s: {"median_s": s}
  rows = [{"model": "m", "num_params": 10, "num_tasks": 3, "method": "ls_1bwd",
           "times": {"1": t(2.0), "2": t(4.0)}},
          {"model": "m", "num_params": 10, "num_tasks": 3, "method": "came",
           "times": {"1": t(3.0), "2": t(5.0)}}]
  (ratio,) = bench_scaling.ratio_rows(rows)
  assert ratio["ratio"] == "came/ls_1bwd"
  assert ratio["by_devices"] == {"1": 1.5, "2": 1.25}
  table = report.scaling_table({"rows": rows, "ratios": [ratio]})
  assert "| m (0.00M) | 3 | **came/ls_1bwd** | 1.50 | 1.25 | - | same loop |" in table
