"""How well the rule-based labeler agrees with hand labels on whole reports.

  python -m examples.rrg.evaluation.labeler_agreement            # prints the table
  python -m examples.rrg.evaluation.labeler_agreement --out examples/rrg/results/labeler_agreement.json

The corpus (`tests/rrg/data/report_corpus.jsonl`, written by `tests/rrg/report_corpus.py`) holds
whole MIMIC-CXR-style reports written by hand for this purpose, each with hand-assigned labels
for the 14 observations, in two halves: `dev` (looked at while the labeler was tuned) and
`heldout` (sentences the tuning never saw).

Definitions, per half and per observation, over the reports of the half:

* a *mention* is a label other than blank (positive, negative or uncertain);
* mention precision, recall and F1: a true positive is a report where both the hand label and
  the labeler's label are mentions, a false positive one where only the labeler's is, a false
  negative one where only the hand label is; F1 = 2 tp / (2 tp + fp + fn);
* macro mention F1: the mean of the per-observation F1 over the observations with at least one
  hand mention in the half;
* negation accuracy: among the (report, observation) pairs whose hand label is negative, the
  share that the labeler labels negative (per observation, and over all observations together);
* label accuracy: among the pairs where both are mentions, the share with the same label.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from examples.rrg.evaluation.labeler import BLANK, NEGATIVE, OBSERVATIONS, label_reports

CORPUS = pathlib.Path(__file__).resolve().parents[3] / "tests" / "rrg" / "data" / \
    "report_corpus.jsonl"
HALVES = ("dev", "heldout")


def load_corpus(path: str | os.PathLike = CORPUS) -> list[dict]:
  """The corpus rows: {"id", "half", "shape", "report", "labels" (14 ints)}."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _ratio(num: int, den: int) -> float | None:
  return num / den if den else None


def agreement(hand: np.ndarray, predicted: np.ndarray) -> dict:
  """Mention precision / recall / F1 and negation accuracy per observation, and overall.

  Args:
    hand, predicted: (N, 14) labels (BLANK, POSITIVE, NEGATIVE, UNCERTAIN).

  Returns:
    {"per_observation": {name: {...}}, "macro_mention_f1", "negation_accuracy",
    "negatives", "reports"}; a ratio whose denominator is 0 is None.
  """
  hand, predicted = np.asarray(hand), np.asarray(predicted)
  if hand.shape != predicted.shape or hand.ndim != 2 or hand.shape[1] != len(OBSERVATIONS):
    raise ValueError(f"hand {hand.shape} and predicted {predicted.shape} must be (N, 14)")
  per = {}
  for j, name in enumerate(OBSERVATIONS):
    h, p = hand[:, j] != BLANK, predicted[:, j] != BLANK
    tp, fp, fn = int((h & p).sum()), int((~h & p).sum()), int((h & ~p).sum())
    negatives = hand[:, j] == NEGATIVE
    both = h & p
    per[name] = {
        "hand_mentions": int(h.sum()), "tp": tp, "fp": fp, "fn": fn,
        "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn) if h.any() else None,
        "hand_negatives": int(negatives.sum()),
        "negation_accuracy": _ratio(int((predicted[negatives, j] == NEGATIVE).sum()),
                                    int(negatives.sum())),
        "label_accuracy": _ratio(int((hand[both, j] == predicted[both, j]).sum()),
                                 int(both.sum())),
    }
  f1s = [row["f1"] for row in per.values() if row["f1"] is not None]
  negatives = hand == NEGATIVE
  return {
      "reports": int(hand.shape[0]),
      "per_observation": per,
      "macro_mention_f1": float(np.mean(f1s)) if f1s else None,
      "negation_accuracy": _ratio(int((predicted[negatives] == NEGATIVE).sum()),
                                  int(negatives.sum())),
      "negatives": int(negatives.sum()),
  }


def corpus_agreement(rows: Sequence[dict]) -> dict:
  """`agreement` of the labeler with the hand labels for each half of the corpus."""
  out = {}
  for half in HALVES:
    chosen = [row for row in rows if row["half"] == half]
    hand = np.array([row["labels"] for row in chosen], np.int32)
    predicted = label_reports([row["report"] for row in chosen])
    out[half] = agreement(hand, predicted)
  return out


def _cell(value: float | None) -> str:
  return "n/a" if value is None else f"{value:.3f}"


def table(result: dict) -> str:
  """The per-observation Markdown table of `corpus_agreement`'s result."""
  dev, held = result["dev"], result["heldout"]
  lines = [
      "| observation | hand mentions (dev / held-out) | mention F1 dev | mention F1 held-out "
      "| negation accuracy dev | negation accuracy held-out |",
      "|---|---|---|---|---|---|",
  ]
  for name in OBSERVATIONS:
    a, b = dev["per_observation"][name], held["per_observation"][name]
    lines.append(
        f"| {name} | {a['hand_mentions']} / {b['hand_mentions']} | {_cell(a['f1'])} "
        f"| {_cell(b['f1'])} | {_cell(a['negation_accuracy'])} ({a['hand_negatives']}) "
        f"| {_cell(b['negation_accuracy'])} ({b['hand_negatives']}) |")
  lines.append(
      f"| **all** ({dev['reports']} / {held['reports']} reports) | | "
      f"**{_cell(dev['macro_mention_f1'])}** (macro) | "
      f"**{_cell(held['macro_mention_f1'])}** (macro) | "
      f"**{_cell(dev['negation_accuracy'])}** ({dev['negatives']}) | "
      f"**{_cell(held['negation_accuracy'])}** ({held['negatives']}) |")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--corpus", default=str(CORPUS), help="JSONL corpus of hand-labelled reports")
  parser.add_argument("--out", default=None, help="also write the result as JSON here")
  args = parser.parse_args(argv)
  result = corpus_agreement(load_corpus(args.corpus))
  print(table(result))
  if args.out:
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
      f.write("\n")
  return result


if __name__ == "__main__":
  main()
