"""The sweep's bookkeeping and tables, and the conflict study's measurements, on made-up runs."""

import dataclasses

import numpy as np
import pytest

from examples.rrg import configs, conflict
from examples.rrg.evaluation import metrics, per_study
from examples.rrg.training import sweep, train

SMOKE = configs.smoke()


def _run(method, seed, ce_shift=0, steps=4):
  rng = np.random.default_rng([seed, len(method)])
  refs = ["the heart is normal .", "small left pleural effusion .", "no pneumothorax .",
          "mild cardiomegaly ."]
  hyps = ["the heart is normal .", "left pleural effusion .", "no pneumothorax .",
          "cardiomegaly ." if ce_shift else "the heart is normal ."]
  ref_labels = np.zeros((4, 14), np.int32)
  ref_labels[[1, 3], [9, 1]] = 1
  hyp_labels = np.zeros((4, 14), np.int32)
  hyp_labels[1, 9] = 1
  if ce_shift:
    hyp_labels[3, 1] = 1
  outputs = per_study.study_outputs(refs, hyps, ref_labels, hyp_labels)
  cosine = np.tile(np.eye(2), (steps, 1, 1))
  cosine[:, 0, 1] = cosine[:, 1, 0] = -0.2 if method == "ls" else 0.1
  return train.RunResult(
      method=method, seed=seed, task_weights=(1.0, 4.0),
      metrics={**per_study.resampled_metrics(outputs, np.arange(4)),
               **metrics.clinical_efficacy(ref_labels, hyp_labels), "loss_nll": rng.random()},
      history={"losses": rng.random((steps, 2)), "cosine": cosine, "encoder_cosine": -cosine,
               "diffusion_decay": np.full(steps, 0.8), "drift_deg": np.full(steps, 5.0)},
      val_curve=[(2, 0.1), (4, 0.2)], selected_step=4, train_time=1.0 + seed,
      compile_time=3.0, step_time=0.01 * (2 if method == "came" else 1), eval_time=0.5,
      num_params=100, hypotheses=hyps, outputs=outputs)


def test_method_list_expands_all_and_rejects_unknown_names():
  everything = sweep.method_list(["all"])
  assert everything[-1] == sweep.LS_TUNED and set(train.method_names()) <= set(everything)
  assert sweep.method_list(["came", "ls", "came"]) == ("came", "ls")
  with pytest.raises(ValueError, match="unknown method 'nope'"):
    sweep.method_list(["ls", "nope"])
  with pytest.raises(ValueError, match="empty"):
    sweep.method_list([])



@pytest.mark.slow
def test_all_leaves_out_what_cannot_run_with_two_tasks():
  k2 = dataclasses.replace(SMOKE, tasks=("nll", "cls"), task_weights=(1.0, 4.0))
  skipped = []
  methods = sweep.method_list(["all"], k2, skipped)
  assert {"krum", "trimmed_mean"}.isdisjoint(methods) and {"ls", "came", "famo"} <= set(methods)
  assert any(note.startswith("krum: ") and "K >= 3" in note for note in skipped)
  with pytest.raises(ValueError, match="'krum' cannot run with tasks"):
    sweep.method_list(["ls", "krum"], k2)
  assert "krum" in sweep.method_list(["all"], SMOKE)  # K = 3


def test_report_has_sample_std_intervals_positives_and_timings():
  config = dataclasses.replace(SMOKE, seeds=(0, 1, 2), bootstrap_samples=100,
                               tasks=("nll", "cls"), task_weights=(1.0, 4.0))
  runs = [_run(m, s, ce_shift=(m == "came")) for m in ("ls", "came") for s in config.seeds]
  result = sweep.Sweep(config=config, runs=runs, plain_ls_step_time=0.005, tuning={},
                       wall_time=12.0)
  rep = sweep.report(result)
  summary = rep.summary["ls"]["train_time"]
  assert summary["mean"] == 2.0 and summary["std"] == pytest.approx(1.0)  # ddof=1
  assert summary["n"] == 3
  ci = rep.intervals["came"]["ce_f1"]
  assert ci["diff"] > 0 and ci["low"] <= ci["diff"] <= ci["high"]
  md = rep.markdown
  assert "| came |" in md and "CE-F1 macro − LS [95% CI]" in md and "±" in md
  assert "| Cardiomegaly | 1 |" in md  # one test study has it, next to its F1
  assert "| plain LS (one backward pass) | - | - | 5.0 | 1.00 |" in md
  assert "| came | 9.0 | 2.0 ± 1.0 | 20.0 | 4.00 |" in md  # step time ratio vs plain LS
  # Per seed: every method's CE-F1 and its difference to LS on that seed.
  per_seed = md.split("CE-F1 macro per seed")[1]
  ls_ce, came_ce = runs[0].metrics["ce_f1"], runs[3].metrics["ce_f1"]
  assert f"| came | {came_ce:.3f} ({came_ce - ls_ce:+.3f}) |" in per_seed
  # The tables come from what results.json holds alone (main --tabulate reads that file).
  import json  # pylint: disable=import-outside-toplevel
  saved = json.loads(json.dumps(sweep.results(result)))
  assert sweep.render(saved) == md


def test_conflict_knob_and_measurement():
  assert conflict.encoder_channels(16, 3) == configs.default().model.channels
  assert conflict.encoder_channels(1) == (1, 2, 4, 4)
  with pytest.raises(ValueError, match="width"):
    conflict.encoder_channels(0)
  measured = conflict.measured_conflict([_run("ls", 0), _run("ls", 1)], ("nll", "cls"),
                                        warmup_steps=1)
  assert measured == pytest.approx({"cosine": -0.2, "negative_fraction": 1.0,
                                    "encoder_cosine": 0.2, "encoder_negative_fraction": 0.0,
                                    "diffusion_decay": 0.8, "drift_deg": 5.0})


def test_mismatch_knob_moves_a_fraction_of_the_training_labels():
  splits, tokenizer = train.load_data(dataclasses.replace(SMOKE, num_train=40))
  train_labels = splits["train"].labels
  assert conflict.mismatch_labels(splits, 0.0)["train"].labels.tolist() == train_labels.tolist()
  half = conflict.mismatch_labels(splits, 0.5, seed=1)
  changed = (half["train"].labels != train_labels).any(axis=1)
  assert 0 < changed.sum() <= 20  # 20 studies drew another study's labels (some equal theirs)
  # Every new row is some training study's labels; val and test are untouched.
  rows = {tuple(r) for r in train_labels.tolist()}
  assert all(tuple(r) in rows for r in half["train"].labels.tolist())
  assert half["val"] is splits["val"] and half["test"] is splits["test"]
  assert half["train"].reports == splits["train"].reports  # the report still describes the image
  config, data = conflict.setting(SMOKE, (splits, tokenizer), "mismatch", 0.5)
  assert config.name == "smoke-mismatch0.5" and data[1] is tokenizer
  config, data = conflict.setting(SMOKE, (splits, tokenizer), "width", 2)
  assert config.model.channels == (2, 4, 8) and data[0] is splits
  with pytest.raises(ValueError, match="mismatch"):
    conflict.mismatch_labels(splits, 1.5)
  with pytest.raises(ValueError, match="knob"):
    conflict.setting(SMOKE, (splits, tokenizer), "noise", 0.1)


def test_conflict_table_and_figure(tmp_path):
  settings = [{"value": v, "ls_full_batch": {
      "full_batch_encoder_cosine": c, "full_batch_encoder_cosine_negative_fraction": n,
      "full_batch_norm_over_joint": [0.9, 1.1]}} for v, c, n in ((0.0, 0.1, 0.0), (1.0, -0.3, 1.0))]
  rows = []
  for v, c in ((0.0, 0.1), (1.0, -0.3)):
    rows.append({"knob": "disjoint", "value": v, "method": "ls", "seeds": 2,
                 "full_batch_encoder_cosine": c, "ce_f1": 0.2, "BLEU_4": 0.1})
    rows.append({"knob": "disjoint", "value": v, "method": "came", "seeds": 2,
                 "full_batch_encoder_cosine": c, "ce_f1": 0.25, "BLEU_4": 0.1,
                 "ce_f1_diff": 0.05, "ce_f1_low": -0.01, "ce_f1_high": 0.12,
                 "BLEU_4_diff": 0.0, "BLEU_4_low": -0.02, "BLEU_4_high": 0.02})
  md = conflict.table(rows, settings)
  assert ("| disjoint 1 | -0.300 | 100% | 0.90 | 1.10 | came | 2 | 0.250 | "
          "+0.050 [-0.010, +0.120] | 0.100 | +0.000 [-0.020, +0.020] |") in md
  assert "| disjoint 0 | +0.100 | 0% | 0.90 | 1.10 | ls | 2 | 0.200 | - | 0.100 | - |" in md
  conflict.plot(rows, str(tmp_path / "conflict.png"))
  assert (tmp_path / "conflict.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_level_intervals_recompute_a_files_intervals_from_its_per_seed_metrics():
  """Legacy result files: t interval over the per-seed paired differences, against SciPy."""
  import scipy.stats

  from examples.rrg.training import sweep as sweep_module
  ls, came = [0.30, 0.25, 0.28], [0.33, 0.24, 0.31]
  data = {"intervals": {"came": {"ce_f1": {"diff": 0.0, "low": 0.0, "high": 0.0}}},
          "runs": [{"method": m, "seed": s, "metrics": {"ce_f1": v}}
                   for m, vals in (("ls", ls), ("came", came)) for s, v in enumerate(vals)]}
  out = sweep_module.seed_level_intervals(data)
  d = np.subtract(came, ls)
  half = scipy.stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
  ci = out["intervals"]["came"]["ce_f1"]
  np.testing.assert_allclose([ci["diff"], ci["low"], ci["high"]],
                             [d.mean(), d.mean() - half, d.mean() + half], rtol=1e-9)
  assert out["interval_method"] == "seed_t" and data["intervals"]["came"]["ce_f1"]["low"] == 0.0
