"""compare.py: one row per finished job, from its results.json."""

import json

import pytest

from examples.rrg import compare


def _results(backbone, diff):
  entry = {"mean": 0.25, "std": 0.05, "n": 3}
  ci = {"diff": diff, "low": diff - 0.01, "high": diff + 0.02}
  return {"config": {"backbone": backbone},
          "summary": {m: {k: dict(entry) for k, _ in compare.METRICS} for m in ("ls", "came")},
          "intervals": {"came": {k: ci for k, _ in compare.METRICS}},
          "runs": [{"num_params": 1234}], "wall_time": 61.4}


def test_table_has_a_row_per_job_with_the_interval(tmp_path):
  for name, backbone, diff in (("a", "r2gen", 0.01), ("b", "promptmrg", -0.02)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(_results(backbone, diff)))
  md = compare.main([str(tmp_path / "a"), str(tmp_path / "b")]).splitlines()
  assert len(md) == 4 and md[0].startswith("| backbone | parameters | seeds |")
  assert md[2].startswith("| r2gen | 1,234 | 3 | 0.250 ± 0.050 | 0.250 ± 0.050 | "
                          "+0.010 [+0.000, +0.030] |") and md[2].endswith("| 61 |")
  assert "| -0.020 [-0.030, +0.000] |" in md[3]


def test_missing_job_or_method_is_a_clear_error(tmp_path):
  with pytest.raises(SystemExit, match="results.json does not exist"):
    compare.main([str(tmp_path)])
  results = _results("r2gen", 0.0)
  del results["summary"]["came"]
  (tmp_path / "results.json").write_text(json.dumps(results))
  with pytest.raises(SystemExit, match="no 'came' runs"):
    compare.main([str(tmp_path)])


def test_per_run_table_pairs_seeds_with_ls(tmp_path):
  for method, seed, ce in (("ls", 0, 0.10), ("ls", 1, 0.20), ("came", 0, 0.15), ("came", 1, 0.18)):
    run = tmp_path / f"{method}_seed{seed}"
    run.mkdir()
    test = {key: ce for key, _ in compare.PER_RUN}
    (run / "metrics.json").write_text(json.dumps({
        "method": method, "seed": seed, "test": test, "step_time": 0.05, "selected_step": 100}))
  lines = compare.main(["--per-run", str(tmp_path)]).splitlines()
  assert lines[2].startswith("| ls | 2 | 0.150 ± 0.071 |")  # sample std of 0.10, 0.20
  assert lines[3].startswith("| came | 2 | 0.165 ± 0.021 |")
  assert "| +0.015 [-0.020, +0.050] | 50 | 100 |" in lines[3]  # per-seed differences
  with pytest.raises(SystemExit, match="no 'ls' runs"):
    compare.main(["--per-run", str(tmp_path / "ls_seed0")])
