"""Per-study test outputs of a run, from which every reported metric can be recomputed.

The paired bootstrap (``stats.paired_bootstrap``) resamples test studies; it needs each metric
as a function of the resampled studies. :class:`StudyOutputs` keeps, per test study, the
reference and generated labels (clinical efficacy is recomputed from them by ``metrics``), the
n-gram counts of corpus BLEU (summed over the resample, so resampled BLEU-4 is corpus BLEU-4 of
the resample), and the per-study ROUGE-L and CIDEr-D scores (pycocoevalcap averages those; the
document frequencies of CIDEr-D stay those of the whole test split).

Example:
  >>> import numpy as np
  >>> refs = ["the heart is normal .", "no pleural effusion ."]
  >>> labels = np.zeros((2, 14), np.int32)
  >>> out = study_outputs(refs, refs, labels, labels)
  >>> round(resampled_metrics(out, np.array([0, 0, 1]))["BLEU_4"], 6)
  1.0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from examples.rrg.evaluation import metrics

_ORDER = 4  # BLEU-4
# pycocoevalcap's constants: tiny keeps a zero match count at zero, small avoids 0/0.
_TINY, _SMALL = 1e-15, 1e-9


@dataclasses.dataclass
class StudyOutputs:
  """Per-study outputs of one run on the test split (N studies)."""

  ref_labels: np.ndarray
  """int (N, 14): reference labels."""
  hyp_labels: np.ndarray
  """int (N, 14): labels of the generated reports."""
  bleu_counts: np.ndarray
  """float (N, 2 + 2 * 4): hypothesis length, reference length, n-grams guessed (n = 1..4),
  n-grams matched (n = 1..4)."""
  rouge_l: np.ndarray
  """float (N,): ROUGE-L per study."""
  cider: np.ndarray
  """float (N,): CIDEr-D per study."""

  def __len__(self) -> int:
    return len(self.ref_labels)


def study_outputs(references: Sequence[str], hypotheses: Sequence[str],
                  ref_labels: np.ndarray, hyp_labels: np.ndarray) -> StudyOutputs:
  """The :class:`StudyOutputs` of cleaned, space-tokenised reports and their labels."""
  # Imported here so that the rest of the example runs without the `examples` extra.
  from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test  # pylint: disable=import-outside-toplevel
  from pycocoevalcap.cider.cider import Cider  # pylint: disable=import-outside-toplevel
  from pycocoevalcap.rouge.rouge import Rouge  # pylint: disable=import-outside-toplevel

  n = len(references)
  if len(hypotheses) != n or len(ref_labels) != n or len(hyp_labels) != n or not n:
    raise ValueError(f"references, hypotheses, ref_labels and hyp_labels must be non-empty and "
                     f"of one length, got {n}, {len(hypotheses)}, {len(ref_labels)}, "
                     f"{len(hyp_labels)}")
  counts = np.zeros((n, 2 + 2 * _ORDER))
  for i, (ref, hyp) in enumerate(zip(references, hypotheses)):
    cooked = cook_test(hyp, cook_refs([ref], n=_ORDER), eff="closest", n=_ORDER)
    counts[i] = [cooked["testlen"], cooked["reflen"], *cooked["guess"], *cooked["correct"]]
  gts = {i: [r.strip()] for i, r in enumerate(references)}
  res = {i: [h.strip()] for i, h in enumerate(hypotheses)}
  return StudyOutputs(
      ref_labels=np.asarray(ref_labels), hyp_labels=np.asarray(hyp_labels), bleu_counts=counts,
      rouge_l=np.asarray(Rouge().compute_score(gts, res)[1], np.float64),
      cider=np.asarray(Cider().compute_score(gts, res)[1], np.float64))


def corpus_bleu(counts: np.ndarray) -> float:
  """Corpus BLEU-4 (pycocoevalcap's formula) from summed :attr:`StudyOutputs.bleu_counts`."""
  testlen, reflen = counts[0], counts[1]
  guess, correct = counts[2:2 + _ORDER], counts[2 + _ORDER:]
  log_bleu = sum(math.log((c + _TINY) / (g + _SMALL)) for c, g in zip(correct, guess)) / _ORDER
  ratio = (testlen + _TINY) / (reflen + _SMALL)
  brevity = 1.0 - 1.0 / ratio if ratio < 1 else 0.0
  return math.exp(log_bleu + brevity)


def resampled_metrics(outputs: StudyOutputs, indices: np.ndarray) -> dict[str, float]:
  """Clinical efficacy, BLEU-4, ROUGE-L and CIDEr on the studies ``indices`` (repeats allowed)."""
  scores = metrics.clinical_efficacy(outputs.ref_labels[indices], outputs.hyp_labels[indices],
                                     per_observation=False)
  scores["BLEU_4"] = corpus_bleu(outputs.bleu_counts[indices].sum(0))
  scores["ROUGE_L"] = float(outputs.rouge_l[indices].mean())
  scores["CIDEr"] = float(outputs.cider[indices].mean())
  return scores
