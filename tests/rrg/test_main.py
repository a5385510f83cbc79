"""The main job end to end on the `smoke` config."""

import json
import math
import os

import pytest

from examples.rrg import main


def test_smoke_end_to_end(tmp_path, capsys):
  out_dir = str(tmp_path / "out")
  out = main.main(["--config", "smoke", "--out", out_dir, "--no-progress"])
  printed = capsys.readouterr().out

  for name in ("results.md", "results.json", "training_curves.png", "reports_ls_seed0.json",
               "reports_came_seed0.json"):
    assert os.path.getsize(os.path.join(out_dir, name)) > 0, name
  with open(os.path.join(out_dir, "results.json"), encoding="utf-8") as f:
    saved = json.load(f)
  assert saved["summary"] == out["summary"]
  assert set(saved["summary"]) == {"ls", "came"}
  assert [(r["method"], r["seed"]) for r in saved["runs"]] == [("ls", 0), ("came", 0)]
  for method, row in saved["summary"].items():
    for key in ("ce_f1", "BLEU_4", "ROUGE_L", "CIDEr", "train_time", "loss_nll", "loss_cls",
                "loss_align"):
      assert math.isfinite(row[key]["mean"]) and row[key]["n"] == 1, (method, key)
    assert 0.0 <= row["ce_f1"]["mean"] <= 1.0
  for run in saved["runs"]:
    assert set(run["final_losses"]) == {"nll", "cls", "align"}
    assert all(math.isfinite(v) for v in run["final_losses"].values())

  with open(os.path.join(out_dir, "results.md"), encoding="utf-8") as f:
    table = f.read()
  for text in ("| ls |", "| came |", "CE-F1", "BLEU-4", "ROUGE-L", "CIDEr", "train time"):
    assert text in table
    assert text in printed
  with open(os.path.join(out_dir, "training_curves.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_flags_fail_before_training(tmp_path):
  with pytest.raises(SystemExit, match="unknown method"):
    main.main(["--config", "smoke", "--methods", "ls,nope", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="needs --ann"):
    main.main(["--config", "smoke", "--data", "r2gen", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="--seeds"):
    main.main(["--config", "smoke", "--seeds", "a,b", "--out", str(tmp_path)])
