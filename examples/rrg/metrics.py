"""Report-generation metrics: language (BLEU, METEOR, ROUGE-L, CIDEr) and clinical efficacy.

`nlg_metrics` uses the scorers of `pycocoevalcap` (the COCO caption evaluation code), as R2Gen and
the RRG papers that follow it do. Texts are expected cleaned and space-tokenised (see
`tokenizer.clean_report`), so the Java PTB tokenizer is not used; METEOR needs Java and is
computed only when `java` is on PATH.

`clinical_efficacy` compares the CheXpert labels of generated reports with those of the
references: an observation labelled positive or uncertain counts as present.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence

import numpy as np

from examples.rrg.labeler import OBSERVATIONS, POSITIVE, UNCERTAIN

_log = logging.getLogger(__name__)


def _as_coco(texts: Sequence[str]) -> dict[int, list[str]]:
  """pycocoevalcap's input format: {id: [text]}."""
  return {i: [text.strip()] for i, text in enumerate(texts)}


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float | None:
  """Corpus METEOR 1.5, or None (with a log message) when Java is not on PATH."""
  if shutil.which("java") is None:
    _log.warning("METEOR skipped: `java` is not on PATH")
    return None
  from pycocoevalcap.meteor.meteor import Meteor  # pylint: disable=import-outside-toplevel
  score, _ = Meteor().compute_score(gts, res)
  return float(score)


def nlg_metrics(references: Sequence[str], hypotheses: Sequence[str], *,
                meteor: bool = True) -> dict[str, float]:
  """Corpus-level BLEU-1..4, ROUGE-L, CIDEr (and METEOR when Java is available).

  Args:
    references: one cleaned reference report per example.
    hypotheses: the generated reports, aligned with `references`.
    meteor: compute METEOR when `java` is on PATH; False skips it (starting the METEOR jar
      takes about 10 s).

  Returns:
    {"BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "ROUGE_L", "CIDEr"}, plus "METEOR" if `meteor`
    and `java` is on PATH; floats as computed by pycocoevalcap (CIDEr is CIDEr-D, on a 0-10
    scale).

  Example:
    >>> refs = ["the heart is normal .", "no pleural effusion ."]
    >>> scores = nlg_metrics(refs, refs, meteor=False)
    >>> round(scores["BLEU_4"], 6)
    1.0
  """
  # Imported here so that the rest of the example runs without the `examples` extra.
  from pycocoevalcap.bleu.bleu import Bleu  # pylint: disable=import-outside-toplevel
  from pycocoevalcap.cider.cider import Cider  # pylint: disable=import-outside-toplevel
  from pycocoevalcap.rouge.rouge import Rouge  # pylint: disable=import-outside-toplevel

  if isinstance(references, str) or isinstance(hypotheses, str):
    raise TypeError("references and hypotheses must be sequences of str")
  if len(references) != len(hypotheses):
    raise ValueError(f"references and hypotheses must have the same length, got "
                     f"{len(references)} and {len(hypotheses)}")
  if not references:
    raise ValueError("references and hypotheses must not be empty")
  gts, res = _as_coco(references), _as_coco(hypotheses)
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  scores = {f"BLEU_{n}": float(b) for n, b in enumerate(bleu, start=1)}
  scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
  scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
  meteor_score = _meteor(gts, res) if meteor else None
  if meteor_score is not None:
    scores["METEOR"] = meteor_score
  return scores


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  """numerator / denominator, 0 where the denominator is 0."""
  numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
  return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                   where=denominator > 0)


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
  return _safe_divide(2 * precision * recall, precision + recall)


def _present(labels: np.ndarray, name: str) -> np.ndarray:
  """Boolean (N, 14): positive or uncertain; validates shape and values."""
  labels = np.asarray(labels)
  if labels.ndim != 2 or labels.shape[1] != len(OBSERVATIONS):
    raise ValueError(f"{name} must have shape (N, {len(OBSERVATIONS)}), got {labels.shape}")
  if not np.isin(labels, (0, 1, 2, 3)).all():
    raise ValueError(f"{name} must hold BLANK/POSITIVE/NEGATIVE/UNCERTAIN (0..3)")
  return np.isin(labels, (POSITIVE, UNCERTAIN))


def clinical_efficacy(ref_labels: np.ndarray, hyp_labels: np.ndarray, *,
                      per_observation: bool = False) -> dict[str, float]:
  """Clinical efficacy: precision, recall and F1 of the 14 CheXpert observations.

  An observation counts as present when labelled `POSITIVE` or `UNCERTAIN`. Per observation,
  precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean, each 0 when its
  denominator is 0.

  Args:
    ref_labels: (N, 14) labels of the reference reports.
    hyp_labels: (N, 14) labels of the generated reports.
    per_observation: also return "ce_precision/<observation>", "ce_recall/..." and
      "ce_f1/..." for each observation.

  Returns:
    "ce_precision", "ce_recall", "ce_f1": macro averages over the 14 observations;
    "ce_micro_precision", "ce_micro_recall", "ce_micro_f1": from TP, FP, FN summed over them.
  """
  ref, hyp = _present(ref_labels, "ref_labels"), _present(hyp_labels, "hyp_labels")
  if ref.shape != hyp.shape:
    raise ValueError(f"ref_labels and hyp_labels must have the same shape, got "
                     f"{ref.shape} and {hyp.shape}")
  tp = (ref & hyp).sum(0)
  fp = (~ref & hyp).sum(0)
  fn = (ref & ~hyp).sum(0)
  precision, recall = _safe_divide(tp, tp + fp), _safe_divide(tp, tp + fn)
  f1 = _f1(precision, recall)
  micro_precision = _safe_divide(tp.sum(), tp.sum() + fp.sum())
  micro_recall = _safe_divide(tp.sum(), tp.sum() + fn.sum())
  scores = {
      "ce_precision": float(precision.mean()),
      "ce_recall": float(recall.mean()),
      "ce_f1": float(f1.mean()),
      "ce_micro_precision": float(micro_precision),
      "ce_micro_recall": float(micro_recall),
      "ce_micro_f1": float(_f1(micro_precision, micro_recall)),
  }
  if per_observation:
    for i, name in enumerate(OBSERVATIONS):
      scores[f"ce_precision/{name}"] = float(precision[i])
      scores[f"ce_recall/{name}"] = float(recall[i])
      scores[f"ce_f1/{name}"] = float(f1[i])
  return scores
