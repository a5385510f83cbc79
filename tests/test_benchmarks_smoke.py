"""Seconds-long smoke run of every benchmark script at tiny sizes (never asserts timings)."""

import json

import pytest

pytest.importorskip("flax")

from benchmarks import run_all  # noqa: E402


@pytest.mark.slow
def test_run_all_quick_writes_json_for_every_benchmark(tmp_path):
  run_all.main(["--quick", "--out", str(tmp_path)])
  for name in ("transform", "weighting", "peers", "train_step"):
    payload = json.loads((tmp_path / f"{name}.json").read_text())
    assert payload["benchmark"] == name
    assert payload["machine"]["jax"]
  transform = json.loads((tmp_path / "transform.json").read_text())
  for case in transform["cases"]:
    assert case["gram_rel_error_vs_float64"] <= 1e-5
    assert {"floor", "came_grad", "numpy"} <= set(case["times"])
  train = json.loads((tmp_path / "train_step.json").read_text())
  assert set(train["times"]) >= {"linear_scalarization", "came_grad", "lean_exact",
                                 "lean_representation"}


@pytest.mark.slow
def test_gpu_check_quick_writes_every_ratio(tmp_path):
  from benchmarks import gpu_check
  payload = gpu_check.main(["--quick", "--out", str(tmp_path)])
  saved = json.loads((tmp_path / "gpu_check.json").read_text())
  assert saved["complete"] and saved["machine"]["loadavg_at_end"] is not None
  assert {"came_grad/floor", "gram/floor"} <= set(payload["transform"][0]["ratios"])
  for row in saved["steps"]:
    assert set(row["ratios"]) == {"came/ls", "came/ls_1bwd", "ls/ls_1bwd"}
