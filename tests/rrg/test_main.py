"""The main job end to end on the `smoke` config, and its flags."""

import json
import math
import os

import pytest

from examples.rrg import main


def test_smoke_end_to_end(tmp_path, capsys):
  out_dir = str(tmp_path / "out")
  out = main.main(["--config", "smoke", "--out", out_dir, "--no-progress", "--methods",
                   "ls,came"])
  printed = capsys.readouterr().out

  for name in ("results.md", "results.json", "training_curves.png"):
    assert os.path.getsize(os.path.join(out_dir, name)) > 0, name
  for run in ("ls_seed0", "came_seed0"):
    for name in ("curves.csv", "curves.json", "reports.json", "metrics.json"):
      assert os.path.getsize(os.path.join(out_dir, run, name)) > 0, (run, name)
    assert os.listdir(os.path.join(out_dir, run, "tensorboard"))
  with open(os.path.join(out_dir, "results.json"), encoding="utf-8") as f:
    saved = json.load(f)
  assert saved["summary"] == json.loads(json.dumps(out["summary"]))
  assert list(saved["summary"]) == ["ls", "came"]
  assert [(r["method"], r["seed"]) for r in saved["runs"]] == [("ls", 0), ("came", 0)]
  for method, row in saved["summary"].items():
    for key in ("ce_f1", "ce_example_f1", "ce_pos_macro_f1", "ce5_macro_f1", "BLEU_4",
                "ROUGE_L", "CIDEr", "train_time", "step_time", "loss_nll", "loss_cls",
                "loss_align"):
      assert math.isfinite(row[key]["mean"]) and row[key]["n"] == 1, (method, key)
      assert row[key]["std"] is None  # one seed: no standard deviation
    assert 0.0 <= row["ce_f1"]["mean"] <= 1.0
  assert set(saved["intervals"]) == {"came"}
  ci = saved["intervals"]["came"]["ce_f1"]
  assert ci["low"] <= ci["diff"] <= ci["high"]
  assert saved["plain_ls_step_time"] > 0

  with open(os.path.join(out_dir, "results.md"), encoding="utf-8") as f:
    table = f.read()
  for text in ("| ls |", "| came |", "CE-F1 macro", "BLEU-4", "95% CI",
               "test positives", "ratio to plain LS", "one seed, no std"):
    assert text in table, text
    assert text in printed, text
  assert "±" not in table.split("Per observation")[0]  # one seed: no ± in the main tables
  with open(os.path.join(out_dir, "training_curves.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # --tabulate rewrites the same tables from the saved runs, without training.
  again = main.main(["--config", "smoke", "--out", out_dir, "--tabulate"])
  assert again["summary"] == out["summary"] and again["intervals"] == out["intervals"]


def test_flags_override_the_config():
  args = main.parse_args(["--steps", "40", "--lr", "0.01", "--batch-size", "4",
                          "--task-weights", "1,2,3", "--rho", "0.7", "--kappa", "2",
                          "--nu", "0.1", "--image-size", "32", "--max-len", "20",
                          "--warmup-fraction", "0.25", "--config", "smoke",
                          "--methods", "all", "--seeds", "3,4"])
  config = main.config_from_args(args)
  assert (config.num_steps, config.learning_rate, config.batch_size) == (40, 0.01, 4)
  assert config.task_weights == (1.0, 2.0, 3.0) and config.warmup_steps == 10
  assert (config.came_rho, config.came_kappa, config.came_nu) == (0.7, 2.0, 0.1)
  assert (config.image_size, config.max_len, config.seeds) == (32, 20, (3, 4))
  assert {"ls", "came", "cagrad", "famo", "dwa", "uncertainty", "ls_tuned"} <= set(
      config.methods)
  config = main.config_from_args(main.parse_args(
      ["--backbone", "promptmrg", "--encoder", "resnet", "--encoder-checkpoint", "enc.npz"]))
  assert config.backbone == "promptmrg" and config.model.encoder == "resnet"
  assert config.model.encoder_checkpoint == "enc.npz"
  assert main.config_from_args(main.parse_args([])).model.encoder == "cnn"


def test_bad_flags_fail_before_training(tmp_path):
  with pytest.raises(SystemExit, match="unknown method"):
    main.main(["--config", "smoke", "--methods", "ls,nope", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="needs --ann"):
    main.main(["--config", "smoke", "--data", "r2gen", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="--seeds"):
    main.main(["--config", "smoke", "--seeds", "a,b", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="--tabulate"):
    main.main(["--config", "smoke", "--tabulate", "--out", str(tmp_path / "empty")])
  with pytest.raises(SystemExit, match="task_weights"):
    main.main(["--config", "smoke", "--task-weights", "1,2", "--out", str(tmp_path)])
