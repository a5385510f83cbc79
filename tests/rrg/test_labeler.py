"""Tests for the rule-based CheXpert-style labeler."""

import numpy as np
import pytest

from examples.rrg.evaluation import labeler
from examples.rrg.evaluation.labeler import (
  BLANK,
  NEGATIVE,
  OBSERVATIONS,
  POSITIVE,
  UNCERTAIN,
  findings_text,
  label_report,
  label_reports,
  load_labels_file,
)

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
    (("the cardiomediastinal silhouette is within normal limits . there is mild pulmonary "
      "edema . no pleural effusion ."),
     _labels(Enlarged_Cardiomediastinum=N, Edema=P, Pleural_Effusion=N)),
]


# Follow-up reports: stability phrasing keeps a finding as it is (MIMIC and IU phrasing).
STABILITY_CASES = [
    ("Moderate cardiomegaly is unchanged.", _labels(Cardiomegaly=P)),
    ("No significant interval change in the small right pleural effusion.",
     _labels(Pleural_Effusion=P)),
    ("The left basilar opacity has not changed.", _labels(Lung_Opacity=P)),
    ("Stable small bilateral pleural effusions.", _labels(Pleural_Effusion=P)),
    ("Right lower lobe consolidation is again seen.", _labels(Consolidation=P)),
    ("Again noted is a 1 cm nodule in the left upper lobe.", _labels(Lung_Lesion=P)),
    ("Mild pulmonary edema, not substantially changed from the prior study.",
     _labels(Edema=P)),
    ("Retrocardiac atelectasis without significant change.", _labels(Atelectasis=P)),
    ("Pneumothorax is essentially unchanged in size compared to the prior radiograph.",
     _labels(Pneumothorax=P)),
    ("There is little interval change in the bibasilar atelectasis.", _labels(Atelectasis=P)),
    ("Severe cardiomegaly is grossly unchanged compared to prior.", _labels(Cardiomegaly=P)),
    ("Stable cardiomegaly. No focal airspace disease.",
     _labels(Cardiomegaly=P, Lung_Opacity=N)),
    ("Unchanged position of the endotracheal tube.", _labels(Support_Devices=P, No_Finding=P)),
    ("The right pleural effusion has decreased in size.", _labels(Pleural_Effusion=P)),
    # ... while negation around it still works.
    ("No pneumothorax. Otherwise no change.", _labels(Pneumothorax=N, No_Finding=P)),
    ("No pleural effusion, unchanged from prior.", _labels(Pleural_Effusion=N, No_Finding=P)),
    ("Heart size is normal and unchanged.", _labels(Cardiomegaly=N, No_Finding=P)),
    ("The lungs remain clear without pleural effusion.",
     _labels(Pleural_Effusion=N, No_Finding=P)),
    ("Resolved left pneumothorax; no change in the right effusion.",
     _labels(Pneumothorax=N, Pleural_Effusion=P)),
    ("No new consolidation, stable small left effusion.",
     _labels(Consolidation=U, Pleural_Effusion=P)),
    ("The previously seen right pneumothorax is no longer visualized.",
     _labels(Pneumothorax=N, No_Finding=P)),
    ("Stable appearance of the chest.", _labels(No_Finding=P)),
    # Stability of the heart or mediastinum without "enlarged" is uncertain (CheXpert's rule).
    ("Heart size is unchanged.", _labels(Cardiomegaly=U)),
    ("Stable cardiomediastinal silhouette.", _labels(Enlarged_Cardiomediastinum=U)),
    ("Heart size and mediastinal contours are stable.",
     _labels(Cardiomegaly=U, Enlarged_Cardiomediastinum=U)),
    ("The cardiac silhouette remains mildly enlarged, unchanged.", _labels(Cardiomegaly=P)),
    ("The cardiomediastinal silhouette is stable and within normal limits.",
     _labels(Enlarged_Cardiomediastinum=N, No_Finding=P)),
]

DEVICE_CASES = [
    ("Tip of the left subclavian line projects over the mid SVC.",
     _labels(Support_Devices=P, No_Finding=P)),
    ("Right-sided Port-A-Cath terminates in the low SVC.",
     _labels(Support_Devices=P, No_Finding=P)),
    ("Left chest wall pacer with leads in the right atrium and right ventricle.",
     _labels(Support_Devices=P, No_Finding=P)),
    ("Median sternotomy wires and mediastinal clips are intact.",
     _labels(Support_Devices=P, No_Finding=P)),
    ("Surgical clips project over the right upper quadrant.",
     _labels(Support_Devices=P, No_Finding=P)),
    ("Dual-lead pacemaker device is unchanged.", _labels(Support_Devices=P, No_Finding=P)),
    ("ET tube in standard position. Enteric tube courses below the diaphragm.",
     _labels(Support_Devices=P, No_Finding=P)),
    ("Interval removal of the right internal jugular line.",
     _labels(Support_Devices=N, No_Finding=P)),
    ("The nasogastric tube and right PICC line have been removed.",
     _labels(Support_Devices=N, No_Finding=P)),
    # "Pleural line" is not a line.
    ("Visceral pleural line at the right apex consistent with a small pneumothorax.",
     _labels(Pneumothorax=P)),
]

CONTOUR_CASES = [
    ("Normal cardiomediastinal and hilar contours.",
     _labels(Enlarged_Cardiomediastinum=N, No_Finding=P)),
    ("The mediastinal and hilar contours are within normal limits.",
     _labels(Enlarged_Cardiomediastinum=N, No_Finding=P)),
    ("Cardiomediastinal contours are unremarkable.",
     _labels(Enlarged_Cardiomediastinum=N, No_Finding=P)),
    ("Hilar and mediastinal contours are normal.",
     _labels(Enlarged_Cardiomediastinum=N, No_Finding=P)),
    ("The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
     _labels(Cardiomegaly=N, Enlarged_Cardiomediastinum=N, No_Finding=P)),
    ("The cardiomediastinal silhouette is enlarged.", _labels(Enlarged_Cardiomediastinum=P)),
    ("The left hemidiaphragm contour is obscured.", _labels(No_Finding=P)),
    # "heart" alone is a mention; the heart as a place or a border is not.
    ("Heart is mildly enlarged.", _labels(Cardiomegaly=P)),
    ("Heart is normal in size.", _labels(Cardiomegaly=N, No_Finding=P)),
    ("Pacer leads terminate in the right heart.", _labels(Support_Devices=P, No_Finding=P)),
    ("A surgical clip projects over the heart.", _labels(Support_Devices=P, No_Finding=P)),
    ("Prosthetic heart valve.", _labels(Support_Devices=P, No_Finding=P)),
    ("The right heart border is obscured.", _labels(No_Finding=P)),
]

EDEMA_CASES = [
    ("Mild pulmonary vascular congestion.", _labels(Edema=U)),
    ("There is no pulmonary vascular congestion.", _labels(Edema=N, No_Finding=P)),
    ("Moderate pulmonary edema with vascular congestion.", _labels(Edema=P)),
    ("Vascular congestion has slightly improved.", _labels(Edema=U)),
    ("Vascular indistinctness suggests mild interstitial edema.", _labels(Edema=U)),
    ("Cephalization of the pulmonary vasculature.", _labels(Edema=P)),
    ("Congestive heart failure.", _labels(Edema=P, Cardiomegaly=U)),
]

# Findings outside the 14 block No Finding when stated, not when negated.
OTHER_FINDING_CASES = [
    ("Hyperinflated lungs consistent with COPD.", _labels()),
    ("Degenerative changes are noted in the thoracic spine.", _labels()),
    ("Calcified granuloma in the left upper lobe.", _labels()),
    ("Mild elevation of the right hemidiaphragm.", _labels()),
    ("Moderate thoracic scoliosis. Lungs are clear.", _labels()),
    ("Atherosclerotic calcifications of the aortic arch.", _labels()),
    ("T-spine osteophytes.", _labels()),
    ("Possible emphysema.", _labels()),
    ("Small hiatal hernia. No acute cardiopulmonary process.", _labels()),
    ("Biapical pleural-parenchymal scarring.", _labels(Pleural_Other=P)),
    ("No emphysema or hiatal hernia.", _labels(No_Finding=P)),
    ("No evidence of pneumomediastinum. No pneumothorax.",
     _labels(Pneumothorax=N, No_Finding=P)),
    ("There is no free air under the diaphragm.", _labels(No_Finding=P)),
]

def _report(*lines: str) -> str:
  """A whole report from its lines."""
  return "\n".join(lines)


# Whole reports: only FINDINGS and IMPRESSION are labelled when section headers are present.
SECTION_CASES = [
    (_report("FINAL REPORT", "EXAMINATION: CHEST (PA AND LAT)", "",
             "INDICATION: History of pneumothorax, now with chest pain.", "",
             "TECHNIQUE: PA and lateral views of the chest.", "",
             "COMPARISON: Chest radiograph from last week.", "", "FINDINGS:", "",
             "The lungs are clear. No pneumothorax.", "", "IMPRESSION:", "",
             "No acute cardiopulmonary process."),
     _labels(Pneumothorax=N, No_Finding=P)),
    (_report("HISTORY: Cough, fever, rule out pneumonia.",
             "FINDINGS: Heart size normal. Lungs clear.", "IMPRESSION: No pneumonia."),
     _labels(Cardiomegaly=N, Pneumonia=N, No_Finding=P)),
    (_report("INDICATION: Intubated patient with heart failure, assess ET tube.",
             "COMPARISON: Chest radiograph from yesterday.",
             ("IMPRESSION: Endotracheal tube terminates 4 cm above the carina. Stable left "
              "pleural effusion.")),
     _labels(Support_Devices=P, Pleural_Effusion=P)),
    ("Indication: chest pain. Findings: mild cardiomegaly.", _labels(Cardiomegaly=P)),
    (("COMPARISON: None. INDICATION: XXXX-year-old male with pleural effusion. FINDINGS: The "
      "heart is normal in size. The mediastinum is unremarkable. IMPRESSION: No acute disease."),
     _labels(Cardiomegaly=N, Enlarged_Cardiomediastinum=N, No_Finding=P)),
    ("INDICATION: Pneumonia?\nTECHNIQUE: Portable AP view.", _labels(No_Finding=P)),
    ("WET READ: pneumothorax on the left.\nFINDINGS: No pneumothorax.",
     _labels(Pneumothorax=N, No_Finding=P)),
    ("Findings consistent with pneumonia in the right lower lobe.", _labels(Pneumonia=P)),
]

_HEADERS = ("EXAMINATION:  CHEST (PORTABLE AP)", "",
            "INDICATION:  ___-year-old woman with pneumothorax and CHF, evaluate for",
            "pneumonia.", "", "COMPARISON:  ___, which showed a right pleural effusion.", "")

# Whole MIMIC-CXR-style reports: what is not a finding of this study is left out, everything
# else is read; the final report wins over a wet read.
WHOLE_REPORT_CASES = [
    # Unheaded paragraphs after the header lines (the phrasings).
    (_report(*_HEADERS, "Heart is mildly enlarged. No pleural effusion."),
     _labels(Cardiomegaly=P, Pleural_Effusion=N)),
    (_report(*_HEADERS, "Unchanged moderate cardiomegaly with retrocardiac atelectasis."),
     _labels(Cardiomegaly=P, Atelectasis=P)),
    (_report(*_HEADERS, "Mild cardiomegaly and widened mediastinum are stable."),
     _labels(Cardiomegaly=P, Enlarged_Cardiomediastinum=P)),
    (_report(*_HEADERS, "Cardiomediastinal contours are unchanged with mild cardiomegaly."),
     _labels(Cardiomegaly=P, Enlarged_Cardiomediastinum=U)),
    (_report(*_HEADERS, "Bilateral pulmonary edema is also increased now moderate to severe."),
     _labels(Edema=P)),
    # All-caps view line, wrapped lines, numbered impression without a colon.
    (_report("FINAL REPORT", *_HEADERS, "PA AND LATERAL VIEWS OF THE CHEST", "",
             "There is no focal consolidation, pleural", "effusion, or pneumothorax. Heart is",
             "mildly enlarged.", "", "IMPRESSION", "1. Mild cardiomegaly.",
             "2. No acute process."),
     _labels(Cardiomegaly=P, Consolidation=N, Pleural_Effusion=N, Pneumothorax=N)),
    # FINDINGS AND IMPRESSION; an unheaded notification sentence is not a finding.
    (_report(*_HEADERS, "FINDINGS AND IMPRESSION:", "Left PICC ends in the low SVC. Lungs clear.",
             "Findings of a possible pneumothorax were discussed with Dr. ___ at 3 pm."),
     _labels(Support_Devices=P, No_Finding=P)),
    (_report(*_HEADERS, "FINDINGS:  Small left effusion.", "",
             "NOTIFICATION:  The pneumonia was communicated to Dr. ___ by telephone."),
     _labels(Pleural_Effusion=P)),
    # A wet read block: read, but the final report wins where both state an observation.
    (_report("WET READ: ___ ___ 2:15 PM", "  1. Possible left apical pneumothorax.",
             "  2. Small right effusion.", "_" * 70, "", "FINAL REPORT", *_HEADERS,
             "The left apex is clear, no pneumothorax."),
     _labels(Pneumothorax=N, Pleural_Effusion=P)),
    (_report("WET READ: ___ ___ 9:00 AM", "No pneumothorax.", "", "FINAL REPORT", *_HEADERS,
             "IMPRESSION:  Tiny right apical pneumothorax."),
     _labels(Pneumothorax=P)),
    # Old-style headers and an all-caps report.
    (_report("UNDERLYING MEDICAL CONDITION:", "  ___ year old man with pneumonia",
             "REASON FOR THIS EXAMINATION:", "  ? effusion", "FINAL REPORT",
             "Right lower lobe consolidation."),
     _labels(Consolidation=P)),
    (_report("HISTORY: PNEUMONIA.", "FINDINGS: MILD EDEMA. NO EFFUSION."),
     _labels(Edema=P, Pleural_Effusion=N)),
    # A request that continues an indication is still the indication.
    (_report("INDICATION: Shortness of breath.", "Assess for pulmonary edema.", "",
             "Lungs are clear."),
     _labels(No_Finding=P)),
]

# Negation and uncertainty that must keep working (MIMIC and IU phrasing).
MORE_CASES = [
    ("No acute cardiopulmonary abnormality.", _labels(No_Finding=P)),
    ("The lungs are clear without focal consolidation, effusion, or pneumothorax.",
     _labels(Consolidation=N, Pleural_Effusion=N, Pneumothorax=N, No_Finding=P)),
    ("Low lung volumes with bibasilar atelectasis.", _labels(Atelectasis=P)),
    ("Cannot exclude a small left pleural effusion.", _labels(Pleural_Effusion=U)),
    ("Right lower lobe opacity may reflect atelectasis or pneumonia.",
     _labels(Lung_Opacity=P, Atelectasis=U, Pneumonia=U)),
    ("Heart size is top normal.", _labels(Cardiomegaly=N, No_Finding=P)),
    ("Left lower lobe collapse.", _labels(Atelectasis=P)),
    ("Heart size within normal limits. No focal airspace disease. No pneumothorax or effusions.",
     _labels(Cardiomegaly=N, Lung_Opacity=N, Pneumothorax=N, Pleural_Effusion=N,
             No_Finding=P)),
    ("Possible trace right pleural effusion versus pleural thickening.",
     _labels(Pleural_Effusion=U, Pleural_Other=U)),
    ("Bony structures are intact.", _labels(No_Finding=P)),
    ("No displaced rib fractures are identified.", _labels(Fracture=N, No_Finding=P)),
]

ALL_CASES = (CASES + STABILITY_CASES + DEVICE_CASES + CONTOUR_CASES + EDEMA_CASES
             + OTHER_FINDING_CASES + SECTION_CASES + WHOLE_REPORT_CASES + MORE_CASES)


@pytest.mark.parametrize("text, expected", ALL_CASES,
                         ids=[c[0][:40] or "empty" for c in ALL_CASES])
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


def test_load_labels_file_reads_chexbert_output_in_order(tmp_path):
  """CheXbert's labeled_reports.csv: no id, the report first, rows in input order."""
  header = [labeler.REPORT_COLUMN, *OBSERVATIONS]
  rows = [['"Mild edema.\nNo effusion."', "", "", "", "", "1.0", *[""] * 4, "0.0", *[""] * 4],
          ["No acute process.", *[""] * 13, "1.0"]]
  path = _write_csv(tmp_path / "labeled_reports.csv", header, rows)
  got = load_labels_file(path, ["b", "a"], texts=["Mild edema. No effusion.",
                                                  " No acute  process. "])
  want = np.stack([_labels(Edema=P, Pleural_Effusion=N), _labels(No_Finding=P)])
  np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match=r"line 3 labels another report than study 'a'"):
    load_labels_file(path, ["b", "a"], texts=["Mild edema. No effusion.", "Edema."])
  with pytest.raises(ValueError, match="2 rows for 3 reports"):
    load_labels_file(path, ["b", "a", "c"], texts=["x", "y", "z"])
  with pytest.raises(ValueError, match=r"missing column\(s\) \['id'\]"):
    load_labels_file(path, ["b", "a"])  # without texts an id column is needed


def test_label_report_rejects_non_str():
  with pytest.raises(TypeError, match="str"):
    label_report(None)


# pylint: disable=protected-access
def test_every_mention_phrase_is_labelled_alone():
  """Each phrase of the mention lists is found on its own (guards against typos/overlaps):
  positive, or uncertain for the mentions that only suggest edema."""
  for observation, phrases in labeler._MENTIONS.items():
    index = OBSERVATIONS.index(observation)
    for phrase in phrases:
      want = UNCERTAIN if phrase in labeler._UNCERTAIN_MENTIONS else POSITIVE
      assert label_report(f"{phrase} .")[index] == want, phrase
      assert label_report(f"no {phrase} .")[index] == NEGATIVE, phrase
  assert labeler._UNCERTAIN_MENTIONS <= set(labeler._MENTIONS["Edema"])
  assert labeler._ANATOMY <= {p for ps in labeler._MENTIONS.values() for p in ps}


def test_every_other_finding_blocks_no_finding_alone():
  for phrase in labeler._OTHER_FINDINGS:
    assert (label_report(f"{phrase} .") == BLANK).all(), phrase
    assert (label_report(f"no {phrase} .") == _labels(No_Finding=P)).all(), phrase
    assert (label_report(f"possible {phrase} .") == BLANK).all(), phrase


def test_phrases_that_name_nothing_label_nothing():
  for phrase in labeler._NOT_MENTIONS:
    assert (label_report(f"the {phrase} is seen .") == _labels(No_Finding=P)).all(), phrase


def test_stability_phrases_never_negate():
  """Each stability phrase before or after a finding leaves it positive."""
  for phrase in labeler._STABILITY:
    for text in (f"{phrase} small left pleural effusion .",
                 f"small left pleural effusion , {phrase} ."):
      assert label_report(text)[OBSERVATIONS.index("Pleural Effusion")] == POSITIVE, text


def test_findings_text_keeps_findings_and_impression():
  report = ("FINAL REPORT\nINDICATION: History of CHF.\nFINDINGS: Mild edema.\n"
            "COMPARISON: None.\nIMPRESSION: Edema.\nRECOMMENDATION(S): Follow up.")
  assert findings_text(report) == "Mild edema.\nEdema."
  assert findings_text("Mild edema.") == "Mild edema."
  assert findings_text("History: asthma. The lungs are clear.") == ""
  assert findings_text("Clinical history: asthma.\nimpression:   clear lungs") == "clear lungs"
  # A header word not followed by ":" or not at the start of a sentence is text.
  assert findings_text("Findings suggest edema.") == "Findings suggest edema."
  assert findings_text("no change in findings: see below") == "no change in findings: see below"


def test_findings_text_reads_the_report_as_written():
  report = ("WET READ: ___ 2 PM\nPossible effusion.\n______________\nFINAL REPORT\n"
            "INDICATION: Cough, evaluate for\npneumonia.\n\nTECHNIQUE: PA and lateral.\n"
            "SINGLE FRONTAL VIEW OF THE CHEST\nMild edema and small\neffusion.\n\n"
            "IMPRESSION\n1. Edema.")
  assert findings_text(report, wet_read=True) == "___ 2 PM\nPossible effusion."
  assert findings_text(report, wet_read=False) == (
      "SINGLE FRONTAL VIEW OF THE CHEST\nMild edema and small effusion.\n1. Edema.")
  sections = labeler.report_sections(report)
  assert [(s.header, s.labelled, s.wet_read) for s in sections] == [
      ("wet read", True, True), ("indication", False, False), ("technique", False, False),
      ("", True, False), ("impression", True, False)]
