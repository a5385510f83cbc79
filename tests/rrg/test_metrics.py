"""Tests for the language and clinical efficacy metrics."""

import importlib.util
import logging

import numpy as np
import pytest

from examples.rrg.evaluation import metrics
from examples.rrg.evaluation.labeler import BLANK, NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN
from examples.rrg.evaluation.metrics import (
  CE_COLUMNS,
  CE_F1_COLUMNS,
  CE_PER_OBSERVATION,
  FIVE_OBSERVATIONS,
  clinical_efficacy,
  nlg_metrics,
)

needs_coco = pytest.mark.skipif(importlib.util.find_spec("pycocoevalcap") is None,
                                reason="pycocoevalcap is not installed")

NLG_KEYS = {"BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "ROUGE_L", "CIDEr"}


@needs_coco
def test_identical_texts_have_bleu_one():
  refs = ["the heart is normal in size .", "there is a small left pleural effusion ."]
  scores = nlg_metrics(refs, refs, meteor=False)
  assert set(scores) == NLG_KEYS
  for n in range(1, 5):
    assert scores[f"BLEU_{n}"] == pytest.approx(1.0, abs=1e-6)
  assert scores["ROUGE_L"] == pytest.approx(1.0)


@needs_coco
def test_rouge_l_hand_computed():
  # LCS("the heart is normal", "heart is enlarged") = 2; P = 2/3, R = 2/4, beta = 1.2.
  scores = nlg_metrics(["the heart is normal"], ["heart is enlarged"], meteor=False)
  p, r, beta2 = 2 / 3, 2 / 4, 1.2 ** 2
  assert scores["ROUGE_L"] == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))


@needs_coco
def test_cider_hand_computed():
  # Two documents, so idf = log(2) for every n-gram of one reference and for unseen ones.
  # "a b" vs "a b": cosine 1 for 1-grams and 2-grams, 0 for 3- and 4-grams -> 10 * 2/4 = 5.
  # "c x" vs "c d": 1-gram cosine 1/2, rest 0 -> 10 * 0.5/4 = 1.25. Same lengths: no penalty.
  scores = nlg_metrics(["a b", "c d"], ["a b", "c x"], meteor=False)
  assert scores["CIDEr"] == pytest.approx((5.0 + 1.25) / 2)


@needs_coco
def test_bleu_penalises_wrong_words_and_order():
  refs = ["no pleural effusion or pneumothorax ."]
  good = nlg_metrics(refs, ["no pleural effusion or pneumothorax ."], meteor=False)
  shuffled = nlg_metrics(refs, ["pneumothorax or effusion pleural no ."], meteor=False)
  assert shuffled["BLEU_1"] == pytest.approx(1.0)  # same words ...
  assert shuffled["BLEU_4"] < 0.01 < good["BLEU_4"]  # ... wrong order


@needs_coco
def test_meteor_skipped_without_java(monkeypatch, caplog):
  monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
  with caplog.at_level(logging.WARNING, logger=metrics.__name__):
    scores = nlg_metrics(["a b c d"], ["a b c d"])
  assert set(scores) == NLG_KEYS
  assert "METEOR skipped" in caplog.text


@needs_coco
def test_meteor_reported_with_java(monkeypatch):
  """METEOR's wiring, with a stand-in for the Java scorer (the real one takes ~10 s)."""
  calls = []

  class FakeMeteor:
    def compute_score(self, gts, res):
      calls.append((gts, res))
      return 0.25, [0.25] * len(gts)

  monkeypatch.setattr(metrics.shutil, "which", lambda name: "/usr/bin/java")
  monkeypatch.setattr("pycocoevalcap.meteor.meteor.Meteor", FakeMeteor)
  scores = nlg_metrics(["a b", "c d"], ["a b", " c x "])
  assert scores["METEOR"] == 0.25
  assert calls == [({0: ["a b"], 1: ["c d"]}, {0: ["a b"], 1: ["c x"]})]


@needs_coco
def test_nlg_metrics_rejects_bad_input():
  with pytest.raises(ValueError, match="same length"):
    nlg_metrics(["a"], ["a", "b"], meteor=False)
  with pytest.raises(ValueError, match="empty"):
    nlg_metrics([], [], meteor=False)
  with pytest.raises(TypeError):
    nlg_metrics("a b", "a b", meteor=False)


def _rows(*reports):
  """(N, 14) labels from one {observation: label} dict per report; the rest BLANK."""
  labels = np.full((len(reports), len(OBSERVATIONS)), BLANK, np.int32)
  for i, report in enumerate(reports):
    for name, value in report.items():
      labels[i, OBSERVATIONS.index(name)] = value
  return labels


# Three reports worked through by hand below. P, U, N: positive, uncertain, negative.
P, U, N = POSITIVE, UNCERTAIN, NEGATIVE
HAND_REF = _rows(
    {"Cardiomegaly": P, "Edema": U},
    {"Pleural Effusion": P, "Atelectasis": U},
    {"No Finding": P},
)
HAND_HYP = _rows(
    {"Cardiomegaly": P, "Edema": P, "Pleural Effusion": P},
    {"Pleural Effusion": U, "Atelectasis": N},
    {"No Finding": P, "Support Devices": P},
)


def _assert_scores(got, want):
  for key, value in want.items():
    assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def test_classwise_uncertain_as_present_by_hand():
  """(a) Present = P or U. Per observation (TP, FP, FN) -> P, R, F1:
  Cardiomegaly (1,0,0) -> 1,1,1; Edema U vs P (1,0,0) -> 1,1,1; Pleural Effusion (1,1,0) ->
  1/2, 1, 2/3; Atelectasis U vs N (0,0,1) -> 0,0,0; No Finding (1,0,0) -> 1,1,1; Support
  Devices (0,1,0) -> 0,0,0; the other 8 absent everywhere -> 0 by the zero-division rule.
  Micro: TP 4, FP 2, FN 1.
  """
  got = clinical_efficacy(HAND_REF, HAND_HYP)
  _assert_scores(got, {
      "ce_precision": 3.5 / 14, "ce_recall": 4 / 14, "ce_f1": (3 + 2 / 3) / 14,
      "ce_micro_precision": 4 / 6, "ce_micro_recall": 4 / 5, "ce_micro_f1": 8 / 11,
      "ce_f1/Pleural Effusion": 2 / 3, "ce_precision/Pleural Effusion": 0.5,
      "ce_recall/Atelectasis": 0.0, "ce_f1/Edema": 1.0, "ce_f1/Support Devices": 0.0,
      "ce_f1/Fracture": 0.0,
  })


def test_example_based_positive_only_by_hand():
  """(b) Present = P only, counted per report over its 14 labels:
  report 1: ref {Cardiomegaly}, hyp {Cardiomegaly, Edema, Effusion} -> TP 1, FP 2, FN 0 ->
  P 1/3, R 1, F1 1/2; report 2: ref {Effusion}, hyp {} (U and N) -> 0, 0 (0/0), 0;
  report 3: ref {No Finding}, hyp {No Finding, Support Devices} -> 1/2, 1, 2/3.
  """
  got = clinical_efficacy(HAND_REF, HAND_HYP)
  _assert_scores(got, {
      "ce_example_precision": (1 / 3 + 0 + 1 / 2) / 3,
      "ce_example_recall": (1 + 0 + 1) / 3,
      "ce_example_f1": (1 / 2 + 0 + 2 / 3) / 3,
  })


def test_classwise_positive_only_by_hand():
  """(c) Present = P only: Cardiomegaly (1,0,0) and No Finding (1,0,0) score 1; Edema (0,1,0),
  Pleural Effusion (0,1,1) (report 2's hyp is U), Support Devices (0,1,0) and the rest 0.
  Micro: TP 2, FP 3, FN 1.
  """
  got = clinical_efficacy(HAND_REF, HAND_HYP)
  _assert_scores(got, {
      "ce_pos_macro_precision": 2 / 14, "ce_pos_macro_recall": 2 / 14,
      "ce_pos_macro_f1": 2 / 14,
      "ce_pos_micro_precision": 2 / 5, "ce_pos_micro_recall": 2 / 3,
      "ce_pos_micro_f1": 4 / 8,
  })


def test_five_observations_by_hand():
  """(d) Present = P or U over Atelectasis (0,0,1), Cardiomegaly (1,0,0), Consolidation (absent),
  Edema (1,0,0), Pleural Effusion (1,1,0). Micro: TP 3, FP 1, FN 1.
  """
  got = clinical_efficacy(HAND_REF, HAND_HYP)
  _assert_scores(got, {
      "ce5_macro_precision": 2.5 / 5, "ce5_macro_recall": 3 / 5,
      "ce5_macro_f1": (2 + 2 / 3) / 5,
      "ce5_micro_precision": 3 / 4, "ce5_micro_recall": 3 / 4, "ce5_micro_f1": 6 / 8,
  })
  assert FIVE_OBSERVATIONS == ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                               "Pleural Effusion")


def test_support_counts_reference_reports_with_the_observation():
  got = clinical_efficacy(HAND_REF, HAND_HYP)
  support = {name: got[f"ce_support/{name}"] for name in OBSERVATIONS}
  assert support == {**{name: 0.0 for name in OBSERVATIONS}, "Cardiomegaly": 1.0,
                     "Edema": 1.0, "Pleural Effusion": 1.0, "Atelectasis": 1.0,
                     "No Finding": 1.0}
  # Uncertain references count; the generated side does not.
  two = _rows({"Edema": U}, {"Edema": P, "Fracture": N})
  got = clinical_efficacy(two, _rows({}, {"Fracture": P}))
  assert got["ce_support/Edema"] == 2.0 and got["ce_support/Fracture"] == 0.0


def test_keys_match_the_columns():
  got = clinical_efficacy(HAND_REF, HAND_HYP)
  per_observation = {f"{prefix}/{name}" for prefix in CE_PER_OBSERVATION
                     for name in OBSERVATIONS}
  assert set(got) == {key for key, _ in CE_COLUMNS} | per_observation
  assert set(clinical_efficacy(HAND_REF, HAND_HYP, per_observation=False)) == {
      key for key, _ in CE_COLUMNS}
  assert [key for key, _ in CE_F1_COLUMNS] == [
      "ce_f1", "ce_micro_f1", "ce_example_f1", "ce_pos_macro_f1", "ce_pos_micro_f1",
      "ce5_macro_f1", "ce5_micro_f1"]
  titles = [title for _, title in CE_COLUMNS]
  assert len(set(titles)) == len(titles)


def test_zero_division_conventions():
  """Absent on both sides scores 0, not 1: a perfect copy of one normal report."""
  normal = _rows({"No Finding": P})
  got = clinical_efficacy(normal, normal)
  assert got["ce_f1"] == pytest.approx(1 / 14)  # 13 observations at 0/0 -> 0
  assert got["ce_micro_f1"] == 1.0 and got["ce_example_f1"] == 1.0
  assert got["ce5_macro_f1"] == 0.0 and got["ce5_micro_f1"] == 0.0
  # Example-based: a report with no positive label on either side scores 0.
  blank = _rows({}, {"Edema": U})
  got = clinical_efficacy(blank, blank)
  for name in ("precision", "recall", "f1"):
    assert got[f"ce_example_{name}"] == 0.0
  assert got["ce_f1/Edema"] == 1.0  # ... while (a) counts the uncertain Edema
  assert got["ce_pos_macro_f1"] == 0.0


def test_perfect_hypotheses_score_one_where_defined():
  rng = np.random.default_rng(0)
  ref = rng.integers(0, 4, size=(50, 14))
  got = clinical_efficacy(ref, ref)
  for key, _ in CE_COLUMNS:
    assert got[key] == pytest.approx(1.0), key


def _loop_reference(ref, hyp, present, columns):
  """Float64 per-observation loops: macro and micro P, R, F1 (a second implementation)."""
  ref, hyp = np.isin(ref[:, columns], present), np.isin(hyp[:, columns], present)
  per_class, totals = [], np.zeros(3)
  for k in range(ref.shape[1]):
    tp = int(np.sum(ref[:, k] & hyp[:, k]))
    fp = int(np.sum(~ref[:, k] & hyp[:, k]))
    fn = int(np.sum(ref[:, k] & ~hyp[:, k]))
    totals += (tp, fp, fn)
    per_class.append((tp, fp, fn))

  def prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)

  macro = np.mean([prf(*c) for c in per_class], axis=0)
  return macro, np.array(prf(*totals))


@pytest.mark.parametrize("seed", range(4))
def test_matches_a_loop_reference_on_random_labels(seed):
  rng = np.random.default_rng(seed)
  ref = rng.integers(0, 4, size=(37, 14))
  hyp = np.where(rng.random((37, 14)) < 0.7, ref, rng.integers(0, 4, size=(37, 14)))
  hyp[:, 3] = NEGATIVE  # an observation never predicted: precision 0 by convention
  got = clinical_efficacy(ref, hyp)
  all14, five = np.arange(14), [OBSERVATIONS.index(n) for n in FIVE_OBSERVATIONS]
  for present, columns, macro_key, micro_key in (
      ((P, U), all14, "ce", "ce_micro"), ((P,), all14, "ce_pos_macro", "ce_pos_micro"),
      ((P, U), five, "ce5_macro", "ce5_micro")):
    macro, micro = _loop_reference(ref, hyp, present, columns)
    for i, name in enumerate(("precision", "recall", "f1")):
      assert got[f"{macro_key}_{name}"] == pytest.approx(macro[i], abs=1e-12)
      assert got[f"{micro_key}_{name}"] == pytest.approx(micro[i], abs=1e-12)
  # Example-based: one report's 14 labels as 14 "reports" of a single class, pooled (micro).
  examples = np.array([_loop_reference(ref[i:i + 1].T, hyp[i:i + 1].T, (P,), [0])[1]
                       for i in range(len(ref))])
  for i, name in enumerate(("precision", "recall", "f1")):
    assert got[f"ce_example_{name}"] == pytest.approx(examples[:, i].mean(), abs=1e-12)


def test_matches_scikit_learn_as_r2gen_and_f1chexbert_call_it():
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(5)
  ref = rng.integers(0, 4, size=(60, 14))
  hyp = np.where(rng.random((60, 14)) < 0.6, ref, rng.integers(0, 4, size=(60, 14)))
  hyp[:, 10] = BLANK
  got = clinical_efficacy(ref, hyp)
  five = [OBSERVATIONS.index(n) for n in FIVE_OBSERVATIONS]
  cases = {
      "ce": (np.isin(ref, (P, U)), np.isin(hyp, (P, U)), "macro"),
      "ce_micro": (np.isin(ref, (P, U)), np.isin(hyp, (P, U)), "micro"),
      "ce_example": (ref == P, hyp == P, "samples"),
      "ce_pos_macro": (ref == P, hyp == P, "macro"),
      "ce_pos_micro": (ref == P, hyp == P, "micro"),
      "ce5_macro": (np.isin(ref, (P, U))[:, five], np.isin(hyp, (P, U))[:, five], "macro"),
      "ce5_micro": (np.isin(ref, (P, U))[:, five], np.isin(hyp, (P, U))[:, five], "micro"),
  }
  for prefix, (y_true, y_pred, average) in cases.items():
    for name, fn in (("precision", sklearn_metrics.precision_score),
                     ("recall", sklearn_metrics.recall_score), ("f1", sklearn_metrics.f1_score)):
      want = fn(y_true.astype(int), y_pred.astype(int), average=average, zero_division=0)
      assert got[f"{prefix}_{name}"] == pytest.approx(want, abs=1e-12), (prefix, name)


def test_clinical_efficacy_rejects_bad_input():
  with pytest.raises(ValueError, match=r"\(N, 14\)"):
    clinical_efficacy(np.zeros((3, 13)), np.zeros((3, 13)))
  with pytest.raises(ValueError, match="same shape"):
    clinical_efficacy(np.zeros((3, 14)), np.zeros((2, 14)))
  with pytest.raises(ValueError, match="0..3"):
    clinical_efficacy(np.full((1, 14), -1), np.zeros((1, 14)))
  with pytest.raises(ValueError, match="hyp_labels"):
    clinical_efficacy(np.zeros((1, 14)), np.full((1, 14), 4))
  with pytest.raises(ValueError, match="at least one"):
    clinical_efficacy(np.zeros((0, 14)), np.zeros((0, 14)))
