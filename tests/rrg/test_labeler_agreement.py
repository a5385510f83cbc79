"""The labeler on whole hand-labelled reports, the committed agreement table and the README.

Mention F1 and negation accuracy are defined in `examples.rrg.evaluation.labeler_agreement`:
a mention is an observation labelled non-blank; per observation, F1 = 2 tp / (2 tp + fp + fn)
over reports (tp: both the hand label and the labeler's are mentions); macro F1 is the mean
over the observations with a hand mention; negation accuracy is the share of the hand-negative
(report, observation) pairs that the labeler labels negative.
"""

import json
import pathlib
import re

import numpy as np
import pytest

from examples.rrg.data import synthetic
from examples.rrg.evaluation import labeler_agreement
from examples.rrg.evaluation.labeler import (
  BLANK,
  NEGATIVE,
  OBSERVATIONS,
  POSITIVE,
  UNCERTAIN,
  label_reports,
)
from tests.rrg import report_corpus

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "examples" / "rrg" / "results" / "labeler_agreement.json"
README = ROOT / "examples" / "rrg" / "README.md"
NO_FINDING = OBSERVATIONS.index("No Finding")
NUMBER_WORDS = {8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}


@pytest.fixture(scope="module")
def rows():
  return labeler_agreement.load_corpus()


@pytest.fixture(scope="module")
def result(rows):
  return labeler_agreement.corpus_agreement(rows)


def test_corpus_is_whole_reports_in_every_shape(rows):
  assert len(rows) >= 300
  assert len({row["id"] for row in rows}) == len(rows)
  for half in labeler_agreement.HALVES:
    chosen = [row for row in rows if row["half"] == half]
    assert len(chosen) >= 150
    assert {row["shape"] for row in chosen} == set(report_corpus.SHAPES)
  labels = np.array([row["labels"] for row in rows])
  assert labels.shape == (len(rows), 14)
  assert set(np.unique(labels)) <= {BLANK, POSITIVE, NEGATIVE, UNCERTAIN}
  assert set(np.unique(labels[:, NO_FINDING])) == {BLANK, POSITIVE}
  texts = "\n".join(row["report"] for row in rows)
  for marker in ("WET READ:", "FINAL REPORT", "FINDINGS AND IMPRESSION:", "\n1. ", "\n2. ",
                 "INDICATION:", "COMPARISON:", "NOTIFICATION:", "OF THE CHEST\n", "___",
                 "discussed with Dr."):
    assert marker in texts, marker
  # Every observation is mentioned by hand in each half; the common ones also negated.
  for half in labeler_agreement.HALVES:
    half_labels = np.array([row["labels"] for row in rows if row["half"] == half])
    assert (half_labels != BLANK).any(0).all(), half
    for name in ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Edema"):
      assert (half_labels[:, OBSERVATIONS.index(name)] == NEGATIVE).sum() >= 10, (half, name)


def test_corpus_file_is_what_the_script_writes(rows):
  """The committed JSONL is the script's output (hand labels from the sentence pools)."""
  assert report_corpus.corpus() == rows


def test_halves_share_no_finding_sentence():
  for slot in report_corpus.FINDINGS.values():
    for pool in slot.values():
      dev, held = report_corpus._half(pool, 0), report_corpus._half(pool, 1)  # pylint: disable=protected-access
      assert not {s for s, _ in dev} & {s for s, _ in held}


def test_hand_aggregation_follows_the_final_report():
  row = report_corpus.aggregate(["PX-", "CM+"], wet_read=["PX?", "EF+"])
  named = {OBSERVATIONS[j]: v for j, v in enumerate(row) if v != BLANK}
  assert named == {"Pneumothorax": NEGATIVE, "Cardiomegaly": POSITIVE,
                   "Pleural Effusion": POSITIVE}
  assert report_corpus.aggregate(["SD+", "EF-"])[NO_FINDING] == POSITIVE
  assert report_corpus.aggregate(["X+"])[NO_FINDING] == BLANK


def test_agreement_definitions():
  hand = np.zeros((4, 14), np.int32)
  pred = np.zeros((4, 14), np.int32)
  e = OBSERVATIONS.index("Edema")
  hand[:, e] = [POSITIVE, NEGATIVE, NEGATIVE, BLANK]
  pred[:, e] = [UNCERTAIN, NEGATIVE, BLANK, POSITIVE]  # tp 2, fn 1, fp 1
  out = labeler_agreement.agreement(hand, pred)
  edema = out["per_observation"]["Edema"]
  assert (edema["tp"], edema["fp"], edema["fn"]) == (2, 1, 1)
  assert edema["f1"] == pytest.approx(4 / 6)
  assert edema["negation_accuracy"] == pytest.approx(0.5)
  assert edema["label_accuracy"] == pytest.approx(0.5)
  assert out["per_observation"]["Fracture"]["f1"] is None  # no hand mention: not in the macro
  assert out["macro_mention_f1"] == pytest.approx(4 / 6)
  assert out["negation_accuracy"] == pytest.approx(0.5)
  with pytest.raises(ValueError, match="must be"):
    labeler_agreement.agreement(hand, pred[:, :13])


def test_labeler_agrees_with_hand_labels(result):
  """Macro mention F1 >= 0.90 and negation accuracy >= 0.93, on each half."""
  print("\n" + labeler_agreement.table(result))
  for half in labeler_agreement.HALVES:
    assert result[half]["macro_mention_f1"] >= 0.90, half
    assert result[half]["negation_accuracy"] >= 0.93, half


def test_committed_results_are_what_the_command_prints(result, tmp_path, capsys):
  out = tmp_path / "agreement.json"
  printed = labeler_agreement.main(["--out", str(out)])
  assert printed == result
  assert json.loads(out.read_text()) == json.loads(RESULTS.read_text())
  assert capsys.readouterr().out.strip() == labeler_agreement.table(result)


def test_readme_table_is_what_the_command_prints(result, rows):
  text = README.read_text()
  table = labeler_agreement.table(result)
  assert table in text
  section = text[text.index("## Labeler agreement"):]
  assert "python -m examples.rrg.evaluation.labeler_agreement" in section
  assert "CheXbert" in section and "--labels" in section
  assert "examples.rrg.evaluation.score" in section
  assert f"{len(rows)} whole" in section and f"in {NUMBER_WORDS[len(report_corpus.SHAPES)]}" \
      " report shapes" in " ".join(section.split())
  # Every number quoted in the prose is in the table or the results.
  prose = section[:section.index(table)] + section[section.index(table) + len(table):]
  prose = prose[:prose.index("\n## ")] if "\n## " in prose else prose
  numbers = set(re.findall(r"\b0\.\d{3}\b", prose))
  assert numbers <= set(re.findall(r"\b[01]\.\d{3}\b", table)), numbers - set(
    re.findall(r"\b[01]\.\d{3}\b", table))


def _whole(report: str, shape: int) -> str:
  """A synthetic report placed in a MIMIC-CXR-style whole report."""
  headers = ("EXAMINATION:  CHEST (PORTABLE AP)\n\nINDICATION:  ___-year-old man with "
             "pneumothorax and edema, evaluate for\npneumonia.\n\nCOMPARISON:  ___.\n\n")
  if shape == 0:
    return f"FINAL REPORT\n{headers}FINDINGS:\n{report}\n\nIMPRESSION:  See above."
  if shape == 1:
    return f"{headers}PA AND LATERAL VIEWS OF THE CHEST\n\n{report}\n"
  return f"WET READ: ___ ___ 2:10 PM\n{report}\n{'_' * 70}\nFINAL REPORT\n{headers}{report}\n"


def test_synthetic_reports_keep_their_labels():
  """The generator's labels are read back exactly, as text and inside whole reports."""
  studies = synthetic.generate(400, image_size=8, seed=11)
  np.testing.assert_array_equal(label_reports(studies.reports), studies.labels)
  for shape in range(3):
    whole = [_whole(report, shape) for report in studies.reports]
    np.testing.assert_array_equal(label_reports(whole), studies.labels)
