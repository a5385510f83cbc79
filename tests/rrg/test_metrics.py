"""Tests for the language and clinical efficacy metrics."""

import logging

import numpy as np
import pytest

from examples.rrg import metrics
from examples.rrg.labeler import BLANK, NEGATIVE, POSITIVE, UNCERTAIN
from examples.rrg.metrics import clinical_efficacy, nlg_metrics

pytest.importorskip("pycocoevalcap")

NLG_KEYS = {"BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "ROUGE_L", "CIDEr"}


def test_identical_texts_have_bleu_one():
  refs = ["the heart is normal in size .", "there is a small left pleural effusion ."]
  scores = nlg_metrics(refs, refs, meteor=False)
  assert set(scores) == NLG_KEYS
  for n in range(1, 5):
    assert scores[f"BLEU_{n}"] == pytest.approx(1.0, abs=1e-6)
  assert scores["ROUGE_L"] == pytest.approx(1.0)


def test_rouge_l_hand_computed():
  # LCS("the heart is normal", "heart is enlarged") = 2; P = 2/3, R = 2/4, beta = 1.2.
  scores = nlg_metrics(["the heart is normal"], ["heart is enlarged"], meteor=False)
  p, r, beta2 = 2 / 3, 2 / 4, 1.2 ** 2
  assert scores["ROUGE_L"] == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))


def test_cider_hand_computed():
  # Two documents, so idf = log(2) for every n-gram of one reference and for unseen ones.
  # "a b" vs "a b": cosine 1 for 1-grams and 2-grams, 0 for 3- and 4-grams -> 10 * 2/4 = 5.
  # "c x" vs "c d": 1-gram cosine 1/2, rest 0 -> 10 * 0.5/4 = 1.25. Same lengths: no penalty.
  scores = nlg_metrics(["a b", "c d"], ["a b", "c x"], meteor=False)
  assert scores["CIDEr"] == pytest.approx((5.0 + 1.25) / 2)


def test_bleu_penalises_wrong_words_and_order():
  refs = ["no pleural effusion or pneumothorax ."]
  good = nlg_metrics(refs, ["no pleural effusion or pneumothorax ."], meteor=False)
  shuffled = nlg_metrics(refs, ["pneumothorax or effusion pleural no ."], meteor=False)
  assert shuffled["BLEU_1"] == pytest.approx(1.0)  # same words ...
  assert shuffled["BLEU_4"] < 0.01 < good["BLEU_4"]  # ... wrong order


def test_meteor_skipped_without_java(monkeypatch, caplog):
  monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
  with caplog.at_level(logging.WARNING, logger=metrics.__name__):
    scores = nlg_metrics(["a b c d"], ["a b c d"])
  assert set(scores) == NLG_KEYS
  assert "METEOR skipped" in caplog.text


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


def test_nlg_metrics_rejects_bad_input():
  with pytest.raises(ValueError, match="same length"):
    nlg_metrics(["a"], ["a", "b"], meteor=False)
  with pytest.raises(ValueError, match="empty"):
    nlg_metrics([], [], meteor=False)
  with pytest.raises(TypeError):
    nlg_metrics("a b", "a b", meteor=False)


def _reference_ce(ref, hyp):
  """Float64 reference: per-observation loops, positive or uncertain = present."""
  ref = np.isin(ref, (POSITIVE, UNCERTAIN))
  hyp = np.isin(hyp, (POSITIVE, UNCERTAIN))
  p, r, f = [], [], []
  tp_all = fp_all = fn_all = 0
  for k in range(ref.shape[1]):
    tp = int(np.sum(ref[:, k] & hyp[:, k]))
    fp = int(np.sum(~ref[:, k] & hyp[:, k]))
    fn = int(np.sum(ref[:, k] & ~hyp[:, k]))
    tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    pk = tp / (tp + fp) if tp + fp else 0.0
    rk = tp / (tp + fn) if tp + fn else 0.0
    p.append(pk)
    r.append(rk)
    f.append(2 * pk * rk / (pk + rk) if pk + rk else 0.0)
  mp = tp_all / (tp_all + fp_all) if tp_all + fp_all else 0.0
  mr = tp_all / (tp_all + fn_all) if tp_all + fn_all else 0.0
  return {
      "ce_precision": np.mean(p), "ce_recall": np.mean(r), "ce_f1": np.mean(f),
      "ce_micro_precision": mp, "ce_micro_recall": mr,
      "ce_micro_f1": 2 * mp * mr / (mp + mr) if mp + mr else 0.0,
  }


@pytest.mark.parametrize("seed", range(4))
def test_clinical_efficacy_matches_reference(seed):
  rng = np.random.default_rng(seed)
  ref = rng.integers(0, 4, size=(37, 14))
  hyp = np.where(rng.random((37, 14)) < 0.7, ref, rng.integers(0, 4, size=(37, 14)))
  hyp[:, 3] = NEGATIVE  # an observation never predicted: precision 0 by convention
  got = clinical_efficacy(ref, hyp)
  want = _reference_ce(ref, hyp)
  assert set(got) == set(want)
  for key, value in want.items():
    assert got[key] == pytest.approx(value, abs=1e-12), key


def test_clinical_efficacy_uncertain_counts_as_positive():
  ref = np.full((2, 14), BLANK)
  hyp = np.full((2, 14), BLANK)
  ref[:, 1] = [POSITIVE, UNCERTAIN]
  hyp[:, 1] = [UNCERTAIN, POSITIVE]
  got = clinical_efficacy(ref, hyp, per_observation=True)
  assert got["ce_micro_f1"] == 1.0
  assert got["ce_f1/Cardiomegaly"] == 1.0
  assert got["ce_f1/Edema"] == 0.0  # absent everywhere: zero division -> 0
  assert got["ce_f1"] == pytest.approx(1 / 14)


def test_clinical_efficacy_rejects_bad_input():
  with pytest.raises(ValueError, match=r"\(N, 14\)"):
    clinical_efficacy(np.zeros((3, 13)), np.zeros((3, 13)))
  with pytest.raises(ValueError, match="same shape"):
    clinical_efficacy(np.zeros((3, 14)), np.zeros((2, 14)))
  with pytest.raises(ValueError, match="0..3"):
    clinical_efficacy(np.full((1, 14), -1), np.zeros((1, 14)))
