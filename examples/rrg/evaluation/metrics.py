"""Report-generation metrics: language (BLEU, METEOR, ROUGE-L, CIDEr) and clinical efficacy.

`nlg_metrics` uses the scorers of `pycocoevalcap` (the COCO caption evaluation code), as R2Gen and
the RRG papers that follow it do. Texts are expected cleaned and space-tokenised (see
`tokenizer.clean_report`), so the Java PTB tokenizer is not used; METEOR needs Java and is
computed only when `java` is on PATH.

`clinical_efficacy` compares the CheXpert labels of generated reports with those of the
references in the four conventions that RRG papers report (class-wise over 14 observations with
uncertain as present, example-based, class-wise with positive only, and the 5-observation
subset); `CE_COLUMNS` names its keys in table order.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence

import numpy as np

from examples.rrg.evaluation.labeler import BLANK, OBSERVATIONS, POSITIVE, UNCERTAIN

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


# Clinical efficacy ------------------------------------------------------------------------------

FIVE_OBSERVATIONS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
"""The 5-observation subset of CheXbert evaluations (e.g. the `f1chexbert` package)."""

_FIVE = np.array([OBSERVATIONS.index(name) for name in FIVE_OBSERVATIONS])

CE_COLUMNS: tuple[tuple[str, str], ...] = (
    # (a) class-wise over the 14 observations, positive or uncertain = present (the paper's).
    ("ce_precision", "CE-P macro"),
    ("ce_recall", "CE-R macro"),
    ("ce_f1", "CE-F1 macro"),
    ("ce_micro_precision", "CE-P micro"),
    ("ce_micro_recall", "CE-R micro"),
    ("ce_micro_f1", "CE-F1 micro"),
    # (b) example-based, positive only (PromptMRG).
    ("ce_example_precision", "CE-P example"),
    ("ce_example_recall", "CE-R example"),
    ("ce_example_f1", "CE-F1 example"),
    # (c) class-wise over the 14, positive only, uncertain as negative (R2Gen).
    ("ce_pos_macro_precision", "CE-P macro pos"),
    ("ce_pos_macro_recall", "CE-R macro pos"),
    ("ce_pos_macro_f1", "CE-F1 macro pos"),
    ("ce_pos_micro_precision", "CE-P micro pos"),
    ("ce_pos_micro_recall", "CE-R micro pos"),
    ("ce_pos_micro_f1", "CE-F1 micro pos"),
    # (d) class-wise over FIVE_OBSERVATIONS, positive or uncertain = present (f1chexbert).
    ("ce5_macro_precision", "CE-P macro-5"),
    ("ce5_macro_recall", "CE-R macro-5"),
    ("ce5_macro_f1", "CE-F1 macro-5"),
    ("ce5_micro_precision", "CE-P micro-5"),
    ("ce5_micro_recall", "CE-R micro-5"),
    ("ce5_micro_f1", "CE-F1 micro-5"),
)
"""Every summary key of `clinical_efficacy` with a short column title, in table order."""

CE_F1_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (key, title) for key, title in CE_COLUMNS if key.endswith("_f1"))
"""The F1 of each convention: the CE columns of a compact table."""

CE_PER_OBSERVATION: tuple[str, ...] = ("ce_precision", "ce_recall", "ce_f1", "ce_support")
"""Prefixes of the per-observation keys `"<prefix>/<observation>"` of `clinical_efficacy`."""


_MEASURES = ("precision", "recall", "f1")


def _counts(ref: np.ndarray, hyp: np.ndarray, axis: int) -> np.ndarray:
  """(3, ...) float64 TP, FP, FN of boolean (N, C) arrays, summed over `axis`."""
  tp = (ref & hyp).sum(axis)
  return np.stack([tp, hyp.sum(axis) - tp, ref.sum(axis) - tp]).astype(float)


def _precision_recall_f1(counts: np.ndarray) -> np.ndarray:
  """(3, ...) P, R, F1 from (3, ...) TP, FP, FN; each 0 where its denominator is 0.

  P = TP / (TP + FP), R = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN) (the harmonic mean of P
  and R, written as the paper's code does).
  """
  tp, fp, fn = counts
  numerator = np.stack([tp, tp, 2 * tp])
  denominator = np.stack([tp + fp, tp + fn, 2 * tp + fp + fn])
  return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                   where=denominator > 0)


def _named(prefix: str, values: np.ndarray) -> dict[str, float]:
  """{"<prefix>_precision": ..., "<prefix>_recall": ..., "<prefix>_f1": ...}."""
  return {f"{prefix}_{measure}": float(v) for measure, v in zip(_MEASURES, values)}


def _macro_micro(counts: np.ndarray, macro: str, micro: str) -> dict[str, float]:
  """Macro (mean over observations) and micro (pooled) P, R, F1 from (3, C) TP, FP, FN."""
  return {**_named(macro, _precision_recall_f1(counts).mean(-1)),
          **_named(micro, _precision_recall_f1(counts.sum(-1)))}


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
  """Validates an (N, 14) label array of BLANK/POSITIVE/NEGATIVE/UNCERTAIN; returns it."""
  labels = np.asarray(labels)
  if labels.ndim != 2 or labels.shape[1] != len(OBSERVATIONS):
    raise ValueError(f"{name} must have shape (N, {len(OBSERVATIONS)}), got {labels.shape}")
  if labels.size and not (labels.min() >= BLANK and labels.max() <= UNCERTAIN
                          and (labels.dtype.kind in "iub" or (labels % 1 == 0).all())):
    raise ValueError(f"{name} must hold BLANK/POSITIVE/NEGATIVE/UNCERTAIN (0..3)")
  return labels


def clinical_efficacy(ref_labels: np.ndarray, hyp_labels: np.ndarray, *,
                      per_observation: bool = True) -> dict[str, float]:
  """Clinical efficacy (CE) of generated reports in the four conventions of the field.

  Labels are CheXbert's (or `labeler.label_reports`'s) 14 observations per report. The
  conventions differ in what counts as present and in how they average:

  ===  ============================  ===================  ===============================
       keys                          present means        average
  ===  ============================  ===================  ===============================
  (a)  ``ce_{precision,recall,f1}``  POSITIVE or          macro: per observation, then the
       ``ce_micro_{...}``            UNCERTAIN            mean over the 14; micro: TP, FP,
                                                          FN pooled over the 14
  (b)  ``ce_example_{...}``          POSITIVE only        per report over its 14 labels,
                                                          then the mean over reports
  (c)  ``ce_pos_macro_{...}``        POSITIVE only        macro and micro over the 14
       ``ce_pos_micro_{...}``
  (d)  ``ce5_macro_{...}``           POSITIVE or          macro and micro over
       ``ce5_micro_{...}``           UNCERTAIN            `FIVE_OBSERVATIONS`
  ===  ============================  ===================  ===============================

  (a) is the CAME-Grad paper's `modules/metrics_clinical.py` (its ``ce_f1`` selects
  checkpoints) and, micro, f1chexbert's 14-observation average; (b) is PromptMRG's
  `modules/metrics_clinical.py`; (c) is R2Gen's `compute_ce.py` (scikit-learn's
  ``average="macro"`` and ``"micro"``); (d) is f1chexbert's 5-observation average.

  Zero division: P = TP / (TP + FP), R = TP / (TP + FN) and F1 = 2 TP / (2 TP + FP + FN) are
  each 0 where their denominator is 0, as in all four sources (NumPy's ``nan_to_num`` there,
  scikit-learn's default ``zero_division`` in R2Gen). So an observation present in no reference
  and no generated report scores P = R = F1 = 0 and lowers a macro average; in (b), a report
  with no positive label on either side scores 0 (No Finding is one of the 14 labels, so a
  normal report usually has one).

  Args:
    ref_labels: (N, 14) labels of the reference reports, values `BLANK`, `POSITIVE`,
      `NEGATIVE`, `UNCERTAIN` (0..3), in the order of `labeler.OBSERVATIONS`.
    hyp_labels: (N, 14) labels of the generated reports, aligned with `ref_labels`.
    per_observation: also return, for each observation name, ``"ce_precision/<name>"``,
      ``"ce_recall/<name>"``, ``"ce_f1/<name>"`` (convention (a)) and ``"ce_support/<name>"``,
      the number of reference reports where it is present (POSITIVE or UNCERTAIN).

  Returns:
    The keys of `CE_COLUMNS` (floats in [0, 1]) and, with `per_observation`, the keys
    ``f"{prefix}/{name}"`` for every prefix in `CE_PER_OBSERVATION` and name in `OBSERVATIONS`.

  Raises:
    ValueError: a label array is not (N, 14) with N >= 1, holds another value, or the two
      shapes differ.

  Example:
    >>> ref = np.zeros((2, 14), np.int32)
    >>> hyp = np.zeros((2, 14), np.int32)
    >>> ref[:, 1] = [POSITIVE, UNCERTAIN]  # Cardiomegaly
    >>> hyp[:, 1] = [POSITIVE, POSITIVE]
    >>> scores = clinical_efficacy(ref, hyp)
    >>> scores["ce_f1/Cardiomegaly"], scores["ce_pos_micro_precision"]
    (1.0, 0.5)
  """
  ref = _check_labels(ref_labels, "ref_labels")
  hyp = _check_labels(hyp_labels, "hyp_labels")
  if ref.shape != hyp.shape:
    raise ValueError(f"ref_labels and hyp_labels must have the same shape, got "
                     f"{ref.shape} and {hyp.shape}")
  if not len(ref):
    raise ValueError("ref_labels and hyp_labels must hold at least one report")
  ref_present = (ref == POSITIVE) | (ref == UNCERTAIN)
  hyp_present = (hyp == POSITIVE) | (hyp == UNCERTAIN)
  ref_positive, hyp_positive = ref == POSITIVE, hyp == POSITIVE

  present_counts = _counts(ref_present, hyp_present, axis=0)  # (3, 14)
  scores = _macro_micro(present_counts, "ce", "ce_micro")  # (a)
  scores.update(_named("ce_example", _precision_recall_f1(  # (b)
      _counts(ref_positive, hyp_positive, axis=1)).mean(-1)))
  scores.update(_macro_micro(_counts(ref_positive, hyp_positive, axis=0),  # (c)
                             "ce_pos_macro", "ce_pos_micro"))
  scores.update(_macro_micro(present_counts[:, _FIVE], "ce5_macro", "ce5_micro"))  # (d)
  scores = {key: scores[key] for key, _ in CE_COLUMNS}
  if per_observation:
    per_class = _precision_recall_f1(present_counts)
    support = ref_present.sum(0)
    for i, name in enumerate(OBSERVATIONS):
      for measure, values in zip(_MEASURES, per_class):
        scores[f"ce_{measure}/{name}"] = float(values[i])
      scores[f"ce_support/{name}"] = float(support[i])
  return scores
