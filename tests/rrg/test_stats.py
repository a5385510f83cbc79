"""Sample std over seeds, paired bootstrap intervals, per-study metrics, curves files."""

import csv
import json
import pathlib
import struct

import numpy as np
import pytest

from examples.rrg.evaluation import metrics, per_study, stats
from examples.rrg.training import curves


def test_mean_std_is_the_sample_std_and_absent_for_one_seed():
  mean, std, n = stats.mean_std([1.0, 2.0, 4.0])
  assert (mean, n) == (7 / 3, 3)
  assert std == pytest.approx(np.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
  assert std > np.std([1.0, 2.0, 4.0])  # not the population std
  assert stats.mean_std([0.25]) == (0.25, None, 1)
  assert stats.format_mean_std([0.25]) == "0.250"
  assert stats.format_mean_std([0.1, 0.3], digits=2) == "0.20 ± 0.14"
  assert stats.mean_std([1.0, float("nan"), 3.0])[2] == 2
  with pytest.raises(ValueError, match="values"):
    stats.mean_std([float("nan")])


def _mean(x, idx):
  return {"m": float(x[idx].mean())}


def test_paired_bootstrap_cancels_what_the_pair_shares():
  rng = np.random.default_rng(0)
  # Seeds differ a lot from each other, studies a lot within a seed; B = A + 0.1 exactly.
  a = [rng.normal(loc=3 * s, size=40) for s in range(5)]
  b = [x + 0.1 for x in a]
  ci = stats.paired_bootstrap(a, b, _mean, num_studies=40, num_samples=200)["m"]
  assert ci["diff"] == pytest.approx(0.1)
  assert ci["high"] - ci["low"] < 1e-9  # paired: the shared variation cancels


def test_paired_bootstrap_covers_the_truth_and_resamples_both_levels():
  rng = np.random.default_rng(1)
  a = [rng.normal(size=60) for _ in range(5)]
  b = [x + 0.2 + rng.normal(scale=0.5, size=60) for x in a]
  ci = stats.paired_bootstrap(a, b, _mean, num_studies=60, num_samples=400, seed=3)["m"]
  assert ci["low"] < ci["diff"] < ci["high"] and ci["low"] < 0.2 < ci["high"]
  # Seed-level noise: one seed's difference far off widens the interval.
  b_off = list(b)
  b_off[0] = b_off[0] + 2.0
  wide = stats.paired_bootstrap(a, b_off, _mean, num_studies=60, num_samples=400, seed=3)["m"]
  assert wide["high"] - wide["low"] > 2 * (ci["high"] - ci["low"])
  with pytest.raises(ValueError, match="paired"):
    stats.paired_bootstrap(a, b[:3], _mean, num_studies=60)


def test_per_study_metrics_reproduce_the_corpus_metrics():
  refs = ["the heart is normal in size .", "no pleural effusion or pneumothorax .",
          "small left pleural effusion .", "mild cardiomegaly . lungs are clear ."]
  hyps = ["the heart is normal .", "no pleural effusion .", "small right pleural effusion .",
          "cardiomegaly . the lungs are clear ."]
  ref_labels = np.zeros((4, 14), np.int32)
  hyp_labels = np.zeros((4, 14), np.int32)
  ref_labels[[2, 3], [9, 1]] = 1
  hyp_labels[[2, 3, 0], [9, 1, 1]] = 1
  out = per_study.study_outputs(refs, hyps, ref_labels, hyp_labels)
  everything = per_study.resampled_metrics(out, np.arange(4))
  corpus = metrics.nlg_metrics(refs, hyps, meteor=False)
  for key in ("BLEU_4", "ROUGE_L", "CIDEr"):
    assert everything[key] == pytest.approx(corpus[key], rel=1e-9), key
  ce = metrics.clinical_efficacy(ref_labels, hyp_labels, per_observation=False)
  assert {k: everything[k] for k in ce} == ce
  # A resample with repeats: BLEU from the summed n-gram counts, not a mean of sentence BLEUs.
  twice = per_study.resampled_metrics(out, np.array([0, 0, 1]))
  expected = metrics.nlg_metrics([refs[0], refs[0], refs[1]], [hyps[0], hyps[0], hyps[1]],
                                 meteor=False)["BLEU_4"]
  assert twice["BLEU_4"] == pytest.approx(expected, rel=1e-9)
  with pytest.raises(ValueError, match="one length"):
    per_study.study_outputs(refs, hyps[:3], ref_labels, hyp_labels)


def _read_events(log_dir):
  """{tag: [(step, value)]} from the TFRecord event files in ``log_dir``."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  out = {}
  for path in sorted(pathlib.Path(log_dir).iterdir()):
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4  # length, its crc, the record, its crc
      for value in event.summary.value:
        out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


def test_curves_are_written_as_csv_json_and_tensorboard(tmp_path):
  history = {"losses": np.array([[2.0, 1.0], [1.5, 0.5], [1.0, 0.25]]),
             "cosine": np.array([[[1, -0.5], [-0.5, 1]]] * 3),
             "drift_deg": np.array([1.0, 2.0, 3.0]),
             "coefficients": np.ones((3, 2))}
  paths = curves.write(history, ("nll", "cls"), str(tmp_path))
  with open(tmp_path / "curves.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["step"] for r in rows] == ["1", "2", "3"]
  assert float(rows[1]["loss/cls"]) == 0.5 and float(rows[2]["cosine/nll-cls"]) == -0.5
  assert float(rows[2]["drift_deg"]) == 3.0 and "coefficient/nll" in rows[0]
  with open(tmp_path / "curves.json", encoding="utf-8") as f:
    assert json.load(f)["loss/nll"] == [2.0, 1.5, 1.0]
  scalars = _read_events(paths[-1])
  assert "cosine/nll-cls" in scalars and "drift_deg" in scalars
  assert scalars["loss/nll"] == [(1, 2.0), (2, 1.5), (3, 1.0)]
  with pytest.raises(ValueError, match="history"):
    curves.columns({"losses": np.ones((3, 5))}, ("nll", "cls"))
