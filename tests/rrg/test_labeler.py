"""Tests for the rule-based CheXpert-style labeler."""

import numpy as np
import pytest

from examples.rrg import labeler
from examples.rrg.labeler import (BLANK, NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN,
                                  label_report, label_reports, load_labels_file)

P, N, U = POSITIVE, NEGATIVE, UNCERTAIN


def _labels(**named: int) -> np.ndarray:
  """A (14,) label vector from keyword arguments such as Pleural_Effusion=P."""
  labels = np.full(len(OBSERVATIONS), BLANK, np.int32)
  for key, value in named.items():
    labels[OBSERVATIONS.index(key.replace("_", " "))] = value
  return labels


CASES = [
    # Plain positive mentions; several findings in one report.
    ("Mild cardiomegaly. Small left pleural effusion.",
     _labels(Cardiomegaly=P, Pleural_Effusion=P)),
    ("There is a right upper lobe nodule and an endotracheal tube.",
     _labels(Lung_Lesion=P, Support_Devices=P)),
    # Negation before a list of mentions, and after a mention.
    ("There is no focal consolidation, pleural effusion, or pneumothorax.",
     _labels(Consolidation=N, Pleural_Effusion=N, Pneumothorax=N, No_Finding=P)),
    ("The heart size is normal. Pneumothorax has resolved.",
     _labels(Cardiomegaly=N, Pneumothorax=N, No_Finding=P)),
    ("Lungs are clear without evidence of edema.", _labels(Edema=N, No_Finding=P)),
    ("Negative for pneumonia. Free of fracture.",
     _labels(Pneumonia=N, Fracture=N, No_Finding=P)),
    ("The heart is not enlarged.", _labels(Cardiomegaly=N, No_Finding=P)),
    # Uncertainty before and after a mention; "cannot exclude" is uncertain, not negative.
    ("Possible small left pleural effusion.", _labels(Pleural_Effusion=U)),
    ("Cannot exclude early pneumonia.", _labels(Pneumonia=U)),
    ("A small apical pneumothorax is not excluded.", _labels(Pneumothorax=U)),
    ("Opacity at the left base suggestive of atelectasis.",
     _labels(Lung_Opacity=P, Atelectasis=U)),
    ("Atelectasis versus consolidation at the right base.",
     _labels(Atelectasis=U, Consolidation=U)),
    ("No new consolidation.", _labels(Consolidation=U)),
    # Scope: a cue does not cross a clause or a verb; sentences are separate scopes.
    ("No pleural effusion, but there is a right pneumothorax.",
     _labels(Pleural_Effusion=N, Pneumothorax=P)),
    ("No pneumothorax is seen and the heart is enlarged.",
     _labels(Pneumothorax=N, Cardiomegaly=P)),
    ("The heart is enlarged and the mediastinum is normal.",
     _labels(Cardiomegaly=P, Enlarged_Cardiomediastinum=N)),
    ("Cardiomegaly with no pleural effusion.",
     _labels(Cardiomegaly=P, Pleural_Effusion=N)),
    ("No evidence of pneumonia. Edema may be present.",
     _labels(Pneumonia=N, Edema=U)),
    # A cue that reaches a later mention applies only forward; "versus" and "?" both ways.
    ("Streaky opacities in the lung bases, likely atelectasis.",
     _labels(Lung_Opacity=P, Atelectasis=U)),
    ("Heart size normal, no effusion.",
     _labels(Cardiomegaly=N, Pleural_Effusion=N, No_Finding=P)),
    ("Mild pulmonary edema versus atypical infection.", _labels(Edema=U, Pneumonia=U)),
    ("Pneumonia?", _labels(Pneumonia=U)),
    # A cue's forward reach ends at the next cue.
    ("Possible right pneumothorax, no effusion.",
     _labels(Pneumothorax=U, Pleural_Effusion=N)),
    ("No focal consolidation to suggest pneumonia.",
     _labels(Consolidation=N, Pneumonia=N, No_Finding=P)),
    # Aggregation across mentions: positive > uncertain > negative.
    ("No effusion on the right. Small effusion on the left.", _labels(Pleural_Effusion=P)),
    ("No pneumonia. Possible pneumonia in the lingula.", _labels(Pneumonia=U)),
    # CHF also makes cardiomegaly uncertain.
    ("Findings consistent with CHF.", _labels(Edema=P, Cardiomegaly=U)),
    # No Finding: support devices do not count as findings; no mention at all is normal.
    ("Right PICC in the SVC. No acute cardiopulmonary process.",
     _labels(Support_Devices=P, No_Finding=P)),
    ("", _labels(No_Finding=P)),
    ("Lungs are clear.", _labels(No_Finding=P)),
    # Case, punctuation and decimals do not matter.
    ("THE HEART IS ENLARGED; 1.5 cm NODULE!", _labels(Cardiomegaly=P, Lung_Lesion=P)),
    # Cleaned R2Gen-style text (" ." separators).
    ("the cardiomediastinal silhouette is within normal limits . there is mild pulmonary "
     "edema . no pleural effusion .",
     _labels(Enlarged_Cardiomediastinum=N, Edema=P, Pleural_Effusion=N)),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0][:40] or "empty" for c in CASES])
def test_label_report_written_sentences(text, expected):
  got = label_report(text)
  assert got.dtype == np.int32 and got.shape == (14,)
  named = {o: int(v) for o, v in zip(OBSERVATIONS, got) if v != BLANK}
  want = {o: int(v) for o, v in zip(OBSERVATIONS, expected) if v != BLANK}
  assert named == want


def test_observation_order_and_values():
  assert OBSERVATIONS[0] == "Enlarged Cardiomediastinum"
  assert OBSERVATIONS[-2:] == ("Support Devices", "No Finding")
  assert len(OBSERVATIONS) == 14
  assert (BLANK, POSITIVE, NEGATIVE, UNCERTAIN) == (0, 1, 2, 3)


def test_no_finding_is_never_negative_or_uncertain():
  texts = [text for text, _ in CASES]
  no_finding = label_reports(texts)[:, OBSERVATIONS.index("No Finding")]
  assert set(no_finding.tolist()) <= {BLANK, POSITIVE}


def test_label_reports_stacks_label_report():
  texts = ["Mild cardiomegaly.", "No effusion.", "Possible pneumonia."]
  got = label_reports(texts)
  assert got.shape == (3, 14) and got.dtype == np.int32
  np.testing.assert_array_equal(got, np.stack([label_report(t) for t in texts]))
  assert label_reports([]).shape == (0, 14)
  with pytest.raises(TypeError, match="single str"):
    label_reports("Mild cardiomegaly.")


def _write_csv(path, header, rows):
  path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")
  return path


def test_load_labels_file_maps_chexpert_values(tmp_path):
  header = ["id", "Reports", *OBSERVATIONS]
  values_a = ["1.0", "0", "-1", "", "nan"] + [""] * 9
  values_b = ["0.0"] * 13 + ["1"]
  path = _write_csv(tmp_path / "chexbert.csv", header,
                    [["a", "text a", *values_a], ["b", "text b", *values_b]])
  got = load_labels_file(path, ["b", "a"])
  expected_a = np.array([P, N, U, BLANK, BLANK] + [BLANK] * 9, np.int32)
  expected_b = np.array([N] * 13 + [P], np.int32)
  np.testing.assert_array_equal(got, np.stack([expected_b, expected_a]))


def test_load_labels_file_custom_id_column(tmp_path):
  path = _write_csv(tmp_path / "l.csv", ["study", *OBSERVATIONS], [["7", *["1"] * 14]])
  np.testing.assert_array_equal(load_labels_file(path, ["7"], id_column="study"),
                                np.full((1, 14), P))


def test_load_labels_file_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.csv"):
    load_labels_file(tmp_path / "missing.csv", ["a"])
  no_edema = [o for o in OBSERVATIONS if o != "Edema"]
  path = _write_csv(tmp_path / "cols.csv", ["id", *no_edema], [["a", *["1"] * 13]])
  with pytest.raises(ValueError, match="Edema"):
    load_labels_file(path, ["a"])
  path = _write_csv(tmp_path / "ids.csv", ["id", *OBSERVATIONS], [["a", *["1"] * 14]])
  with pytest.raises(ValueError, match="'zz'"):
    load_labels_file(path, ["a", "zz"])
  path = _write_csv(tmp_path / "bad.csv", ["id", *OBSERVATIONS], [["a", "2", *["1"] * 13]])
  with pytest.raises(ValueError, match="Enlarged Cardiomediastinum"):
    load_labels_file(path, ["a"])
  path = _write_csv(tmp_path / "dup.csv", ["id", *OBSERVATIONS],
                    [["a", *["1"] * 14], ["a", *["0"] * 14]])
  with pytest.raises(ValueError, match="more than once"):
    load_labels_file(path, ["a"])


def test_label_report_rejects_non_str():
  with pytest.raises(TypeError, match="str"):
    label_report(None)


def test_every_mention_phrase_is_labelled_positive_alone():
  """Each phrase of the mention lists is found on its own (guards against typos/overlaps)."""
  for observation, phrases in labeler._MENTIONS.items():  # pylint: disable=protected-access
    index = OBSERVATIONS.index(observation)
    for phrase in phrases:
      assert label_report(f"{phrase} .")[index] == POSITIVE, phrase
