"""Writes the corpus of whole chest radiograph reports with hand-assigned labels.

  python -m tests.rrg.report_corpus          # rewrites tests/rrg/data/report_corpus.jsonl

Every sentence below was written by hand, with the labels it states written by hand next to it
(never by the labeler). A report is put together from these sentences in one of the report
shapes of MIMIC-CXR (header lines, FINDINGS / IMPRESSION, unheaded paragraphs, WET READ blocks
before the FINAL REPORT, numbered impressions, all-caps view lines, `___` placeholders,
notification lines, lines wrapped at a fixed width), and its labels are the CheXpert aggregation
of the hand labels of its sentences:

* per observation, positive > uncertain > negative > blank over the sentences that are
  findings of this study (indication, history, comparison, technique and notification lines
  state none, whatever they name);
* where a WET READ block and the final report both state an observation, the final report's
  label is the report's (the final report wins); the wet read keeps what the final report does
  not state;
* No Finding is positive iff no observation other than Support Devices, and no finding outside
  the 14 (code `X`), is positive or uncertain.

Label codes: EC Enlarged Cardiomediastinum, CM Cardiomegaly, OP Lung Opacity, LL Lung Lesion,
ED Edema, CO Consolidation, PN Pneumonia, AT Atelectasis, PX Pneumothorax, EF Pleural Effusion,
PO Pleural Other, FX Fracture, SD Support Devices, X a finding outside the 14; a suffix `+`
positive, `-` negative, `?` uncertain.

Every pool alternates between two halves: the sentences at even positions build the `dev`
reports, those at odd positions the `heldout` reports, so that the two halves share no finding
sentence (the labeler was tuned by looking at `dev` only).
"""

from __future__ import annotations

import json
import pathlib
import textwrap

import numpy as np

from examples.rrg.evaluation.labeler import (
  BLANK,
  NEGATIVE,
  OBSERVATIONS,
  POSITIVE,
  UNCERTAIN,
)

PATH = pathlib.Path(__file__).parent / "data" / "report_corpus.jsonl"
REPORTS_PER_HALF = 180
SEED = 18

CODES = {
    "EC": "Enlarged Cardiomediastinum", "CM": "Cardiomegaly", "OP": "Lung Opacity",
    "LL": "Lung Lesion", "ED": "Edema", "CO": "Consolidation", "PN": "Pneumonia",
    "AT": "Atelectasis", "PX": "Pneumothorax", "EF": "Pleural Effusion", "PO": "Pleural Other",
    "FX": "Fracture", "SD": "Support Devices", "X": "other finding",
}
VALUES = {"+": POSITIVE, "-": NEGATIVE, "?": UNCERTAIN}
PRIORITY = {BLANK: 0, NEGATIVE: 1, UNCERTAIN: 2, POSITIVE: 3}

# Findings, by slot and by group: a report draws one group per slot and then sentences of it.
FINDINGS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "devices": {
        "none": [],
        "present": [
            ("Endotracheal tube terminates approximately 4.5 cm above the carina.", "SD+"),
            ("The ET tube tip is 3 cm above the carina.", "SD+"),
            ("Right internal jugular central venous catheter ends in the mid SVC.", "SD+"),
            ("Left PICC line tip projects over the cavoatrial junction.", "SD+"),
            ("Enteric tube courses below the diaphragm with the tip out of view.", "SD+"),
            ("Nasogastric tube tip is in the stomach.", "SD+"),
            ("Dual-chamber pacemaker with leads in the right atrium and right ventricle.",
             "SD+"),
            ("Left chest wall pacer device with intact leads.", "SD+"),
            ("Median sternotomy wires and mediastinal surgical clips are noted.", "SD+"),
            ("Intact median sternotomy wires.", "SD+"),
            ("Right chest tube in place, unchanged in position.", "SD+"),
            ("A left-sided pigtail catheter projects over the lung base.", "SD+"),
            ("Right-sided Port-A-Cath with the catheter tip in the low SVC.", "SD+"),
            ("Swan-Ganz catheter tip in the right pulmonary artery.", "SD+"),
            ("Tracheostomy tube is in standard position.", "SD+"),
            ("Cervical spinal fusion hardware is partially imaged.", "SD+"),
        ],
        "removed": [
            ("Interval removal of the endotracheal tube.", "SD-"),
            ("The right internal jugular line has been removed.", "SD-"),
            ("The nasogastric tube has been removed in the interval.", "SD-"),
            ("Left chest tube has been removed.", "SD-"),
        ],
        "malpositioned": [
            ("The enteric tube is coiled in the esophagus and should be advanced.", "SD+"),
            ("Endotracheal tube tip is in the right main stem bronchus; recommend withdrawal "
             "by 2 cm.", "SD+"),
            ("The left subclavian line tip is directed cephalad into the internal jugular vein.",
             "SD+"),
            ("Feeding tube tip is in the distal esophagus.", "SD+"),
        ],
    },
    "heart": {
        "normal": [
            ("Heart size is normal.", "CM-"),
            ("The heart is normal in size.", "CM-"),
            ("Cardiac size is within normal limits.", "CM-"),
            ("The cardiac silhouette is not enlarged.", "CM-"),
            ("Heart size is top normal.", "CM-"),
            ("No cardiomegaly.", "CM-"),
        ],
        "heart_and_mediastinum_normal": [
            ("Heart size and mediastinal contours are normal.", "CM- EC-"),
            ("The cardiomediastinal silhouette is within normal limits.", "EC-"),
            ("Normal cardiomediastinal and hilar contours.", "EC-"),
            ("The heart and mediastinum are unremarkable.", "CM- EC-"),
            ("Cardiomediastinal contours are normal.", "EC-"),
            ("The mediastinal and hilar contours are within normal limits.", "EC-"),
        ],
        "enlarged": [
            ("Heart is mildly enlarged.", "CM+"),
            ("Moderate cardiomegaly.", "CM+"),
            ("The heart is moderately enlarged.", "CM+"),
            ("Mild cardiomegaly is present.", "CM+"),
            ("There is severe enlargement of the cardiac silhouette.", "CM+"),
            ("Heart size is enlarged.", "CM+"),
            ("Marked cardiomegaly is seen.", "CM+"),
            ("The cardiac silhouette is enlarged.", "CM+"),
        ],
        "enlarged_stable": [
            ("Unchanged moderate cardiomegaly.", "CM+"),
            ("Moderate cardiomegaly is stable.", "CM+"),
            ("The heart remains mildly enlarged.", "CM+"),
            ("Stable mild cardiomegaly.", "CM+"),
            ("Cardiomegaly is unchanged from the prior study.", "CM+"),
            ("The cardiac silhouette remains enlarged, unchanged.", "CM+"),
        ],
        "enlarged_with_mediastinum": [
            ("Mild cardiomegaly and widened mediastinum are stable.", "CM+ EC+"),
            ("Cardiomediastinal contours are unchanged with mild cardiomegaly.", "CM+ EC?"),
            ("Moderate cardiomegaly; the mediastinal contours are normal.", "CM+ EC-"),
            ("The heart is enlarged and the mediastinum is widened.", "CM+ EC+"),
            ("Enlarged cardiac silhouette with normal mediastinal contours.", "CM+ EC-"),
            ("The mediastinum is widened, and there is mild cardiomegaly.", "CM+ EC+"),
        ],
        "borderline": [
            ("Heart size is borderline enlarged.", "CM?"),
            ("The heart size is at the upper limits of normal, possibly mildly enlarged.",
             "CM?"),
            ("Possible mild cardiomegaly.", "CM?"),
            ("Borderline cardiomegaly.", "CM?"),
        ],
        "stable_anatomy": [
            ("Heart size is unchanged.", "CM?"),
            ("Stable cardiomediastinal silhouette.", "EC?"),
            ("Heart size and mediastinal contours are stable.", "CM? EC?"),
            ("The cardiac silhouette is unchanged in size.", "CM?"),
            ("Cardiomediastinal contours are unchanged.", "EC?"),
            ("Mediastinal contours are stable.", "EC?"),
        ],
        "mediastinum_widened": [
            ("The mediastinum is widened.", "EC+"),
            ("Widening of the superior mediastinum is new.", "EC+"),
            ("Mediastinal widening is again seen.", "EC+"),
            ("The upper mediastinum is possibly widened.", "EC?"),
        ],
    },
    "lungs": {
        "clear": [
            ("The lungs are clear.", ""),
            ("Lungs are clear without focal consolidation.", "CO-"),
            ("There is no focal consolidation.", "CO-"),
            ("No focal airspace opacity.", "OP-"),
            ("The lungs are well expanded and clear.", ""),
            ("No consolidation or edema.", "CO- ED-"),
            ("No focal consolidation to suggest pneumonia.", "CO- PN-"),
            ("No pulmonary edema.", "ED-"),
            ("No pulmonary nodules or masses are seen.", "LL-"),
            ("There is no evidence of pneumonia.", "PN-"),
            ("Lungs are clear without edema or infiltrate.", "ED- OP-"),
            ("No focal opacity concerning for pneumonia.", "OP- PN-"),
            ("No atelectasis or consolidation.", "AT- CO-"),
            ("There is no lobar collapse or consolidation.", "AT- CO-"),
            ("No suspicious pulmonary nodule or mass.", "LL-"),
            ("No nodules or masses are identified.", "LL-"),
        ],
        "edema": [
            ("There is mild pulmonary edema.", "ED+"),
            ("Moderate interstitial pulmonary edema.", "ED+"),
            ("Bilateral pulmonary edema is also increased now moderate to severe.", "ED+"),
            ("Mild interstitial edema has slightly worsened.", "ED+"),
            ("Pulmonary edema is unchanged.", "ED+"),
            ("Diffuse perihilar haziness consistent with pulmonary edema.", "OP+ ED+"),
            ("Findings consistent with congestive heart failure.", "ED+ CM?"),
            ("Severe pulmonary edema has worsened compared to the prior radiograph.", "ED+"),
        ],
        "congestion": [
            ("Mild pulmonary vascular congestion.", "ED?"),
            ("There is pulmonary vascular congestion without frank edema.", "ED? ED-"),
            ("Vascular congestion is slightly improved.", "ED?"),
            ("Mild vascular engorgement and pulmonary vascular congestion.", "ED?"),
        ],
        "edema_resolved": [
            ("Pulmonary edema has resolved.", "ED-"),
            ("Interval resolution of pulmonary edema.", "ED-"),
            ("The previously seen edema is no longer present.", "ED-"),
            ("No residual pulmonary edema.", "ED-"),
        ],
        "consolidation": [
            ("Right lower lobe consolidation.", "CO+"),
            ("There is a new consolidation in the left lower lobe.", "CO+"),
            ("Dense consolidation in the right middle lobe is again seen.", "CO+"),
            ("Focal consolidation at the left base.", "CO+"),
            ("Left lower lobe consolidation, compatible with pneumonia.", "CO+ PN+"),
            ("Consolidation in the right upper lobe is concerning for pneumonia.", "CO+ PN?"),
        ],
        "pneumonia": [
            ("Right lower lobe pneumonia.", "PN+"),
            ("Findings concerning for pneumonia in the left lower lobe.", "PN?"),
            ("Opacity in the right lower lobe likely reflects pneumonia.", "OP+ PN?"),
            ("Multifocal pneumonia is again seen.", "PN+"),
            ("Patchy left basilar opacity may represent aspiration or pneumonia.",
             "OP+ PN? X?"),
            ("Cannot exclude early pneumonia in the lingula.", "PN?"),
            ("Left lower lobe opacity, concerning for infection.", "OP+ PN?"),
            ("Right middle lobe pneumonia has improved.", "PN+"),
        ],
        "opacity": [
            ("Patchy opacity at the left lung base.", "OP+"),
            ("There is an ill-defined opacity in the right upper lobe.", "OP+"),
            ("Bibasilar opacities are unchanged.", "OP+"),
            ("Increased opacity at the right base.", "OP+"),
            ("Hazy opacification of the left hemithorax.", "OP+"),
            ("Streaky right basilar opacity.", "OP+"),
        ],
        "atelectasis": [
            ("Bibasilar atelectasis.", "AT+"),
            ("Mild left basilar atelectasis.", "AT+"),
            ("Linear atelectasis at the right base.", "AT+"),
            ("Unchanged moderate cardiomegaly with retrocardiac atelectasis.", "CM+ AT+"),
            ("Left lower lobe collapse.", "AT+"),
            ("Minimal bibasilar atelectasis is unchanged.", "AT+"),
            ("Streaky opacities at the lung bases likely reflect atelectasis.", "OP+ AT?"),
            ("Retrocardiac opacity, likely atelectasis.", "OP+ AT?"),
            ("Left basilar opacity, atelectasis versus consolidation.", "OP+ AT? CO?"),
            ("Right basilar opacity may reflect atelectasis, though pneumonia cannot be "
             "excluded.", "OP+ AT? PN?"),
        ],
        "lesion": [
            ("A 1.5 cm nodule in the right upper lobe.", "LL+"),
            ("There is a 2 cm mass in the left hilum.", "LL+"),
            ("Again seen is a spiculated nodule in the left upper lobe.", "LL+"),
            ("Possible nodular opacity in the right mid lung.", "LL?"),
            ("A right lower lobe nodule is stable.", "LL+"),
            ("Known left lower lobe mass is again noted.", "LL+"),
            ("Nodular density at the right base could reflect a nipple shadow.", "LL?"),
            ("Multiple pulmonary nodules consistent with metastatic disease.", "LL+"),
        ],
        "other": [
            ("The lungs are hyperinflated, consistent with emphysema.", "X+"),
            ("Calcified granuloma in the right upper lobe.", "X+"),
            ("Biapical pleural-parenchymal scarring.", "PO+"),
            ("Mild elevation of the right hemidiaphragm.", "X+"),
            ("Chronic interstitial abnormality.", "X+"),
            ("Small hiatal hernia.", "X+"),
        ],
    },
    "pleura": {
        "normal": [
            ("No pleural effusion or pneumothorax.", "EF- PX-"),
            ("There is no pleural effusion.", "EF-"),
            ("No pneumothorax.", "PX-"),
            ("No effusion or pneumothorax is seen.", "EF- PX-"),
            ("There is no pneumothorax or large effusion.", "PX- EF-"),
            ("Costophrenic angles are sharp.", ""),
            ("No pleural abnormality.", ""),
            ("Neither pleural effusion nor pneumothorax.", "EF- PX-"),
            ("No pleural thickening or effusion.", "PO- EF-"),
            ("No pleural effusion, thickening, or pneumothorax.", "EF- PO- PX-"),
        ],
        "effusion": [
            ("Small left pleural effusion.", "EF+"),
            ("Moderate right pleural effusion with adjacent atelectasis.", "EF+ AT+"),
            ("Small bilateral pleural effusions.", "EF+"),
            ("Large right pleural effusion has increased.", "EF+"),
            ("Layering left effusion is unchanged.", "EF+"),
            ("Trace bilateral pleural effusions.", "EF+"),
            ("There is a small right effusion, without pneumothorax.", "EF+ PX-"),
            ("Stable small left pleural effusion, no pneumothorax.", "EF+ PX-"),
        ],
        "effusion_uncertain": [
            ("Possible small left pleural effusion.", "EF?"),
            ("Blunting of the right costophrenic angle may reflect a small effusion.",
             "EF? X+"),
            ("A trace right pleural effusion is not excluded.", "EF?"),
            ("Questionable tiny left effusion.", "EF?"),
        ],
        "pneumothorax": [
            ("Small right apical pneumothorax.", "PX+"),
            ("There is a moderate left pneumothorax.", "PX+"),
            ("Tiny left apical pneumothorax is unchanged.", "PX+"),
            ("The right pneumothorax has decreased in size.", "PX+"),
            ("Small right pneumothorax, no pleural effusion.", "PX+ EF-"),
            ("New small left pneumothorax.", "PX+"),
        ],
        "pneumothorax_resolved": [
            ("The right pneumothorax has resolved.", "PX-"),
            ("No residual pneumothorax.", "PX-"),
            ("Previously seen left apical pneumothorax is no longer visualized.", "PX-"),
            ("No pneumothorax after chest tube removal.", "PX- SD-"),
        ],
        "pneumothorax_uncertain": [
            ("Possible tiny right apical pneumothorax.", "PX?"),
            ("A small left apical pneumothorax cannot be excluded.", "PX?"),
            ("Questionable small pneumothorax at the right apex.", "PX?"),
            ("Cannot exclude a tiny left pneumothorax.", "PX?"),
        ],
        "pleural_other": [
            ("Right pleural thickening is unchanged.", "PO+"),
            ("Calcified pleural plaques are consistent with prior asbestos exposure.",
             "PO+"),
            ("Left apical pleural thickening.", "PO+"),
            ("Bilateral pleural plaques.", "PO+"),
        ],
    },
    "bones": {
        "none": [],
        "normal": [
            ("No acute osseous abnormality.", ""),
            ("The osseous structures are intact.", ""),
            ("No displaced rib fractures are identified.", "FX-"),
            ("Bony structures are unremarkable.", ""),
            ("No acute fracture.", "FX-"),
            ("Visualized osseous structures are grossly intact.", ""),
            ("Bones are intact without fracture.", "FX-"),
            ("No fracture is seen.", "FX-"),
        ],
        "fracture": [
            ("Acute fracture of the left seventh rib.", "FX+"),
            ("Healed right rib fractures.", "FX+"),
            ("There are old left-sided rib fractures.", "FX+"),
            ("Possible nondisplaced fracture of the right fifth rib.", "FX?"),
            ("Compression fracture of a mid thoracic vertebral body is unchanged.", "FX+"),
            ("Displaced fracture of the right clavicle.", "FX+"),
        ],
        "degenerative": [
            ("Degenerative changes of the thoracic spine.", "X+"),
            ("Moderate thoracic scoliosis.", "X+"),
            ("Multilevel degenerative change in the spine.", "X+"),
            ("Mild degenerative changes of both shoulders.", "X+"),
        ],
    },
}

# Impressions that say nothing is wrong, for reports with no finding.
NORMAL_IMPRESSION = [
    ("No acute cardiopulmonary process.", ""),
    ("No acute intrathoracic abnormality.", ""),
    ("No evidence of acute disease.", ""),
    ("Normal chest radiograph.", ""),
    ("No radiographic evidence of pneumonia.", "PN-"),
    ("No acute cardiopulmonary abnormality.", ""),
]
STABLE_IMPRESSION = [
    ("No significant interval change.", ""),
    ("Otherwise, no change from the prior study.", ""),
    ("Stable appearance of the chest.", ""),
    ("No other interval change.", ""),
]

# Lines that state no finding of this study, whatever they name (hand label: nothing).
INDICATION = [
    "___-year-old man with cough and fever, evaluate for pneumonia.",
    "___-year-old woman with history of CHF, now with shortness of breath. Assess for "
    "pulmonary edema.",
    "s/p right chest tube placement for pneumothorax, evaluate for interval change.",
    "History of lung cancer with known left upper lobe mass, new hemoptysis.",
    "___ with pleural effusion, status post thoracentesis, evaluate for pneumothorax.",
    "Intubated patient, assess endotracheal tube position.",
    "Trauma, rule out rib fracture and pneumothorax.",
    "___-year-old with cardiomegaly and worsening dyspnea // ? edema",
    "Chest pain.",
    "Fever. Evaluate for infiltrate or consolidation.",
    "___ y/o F with COPD exacerbation and hypoxia, please evaluate for pneumonia or "
    "atelectasis",
    "Pre-operative chest radiograph.",
    "New PICC line placement, please confirm position.",
    "Follow-up of right lower lobe pneumonia.",
    "History of aortic dissection, evaluate for mediastinal widening.",
    "Status post fall with left chest wall pain, assess for fracture.",
]
HEADER_NAMES = {
    "indication": ["INDICATION:", "HISTORY:", "REASON FOR EXAM:", "CLINICAL INFORMATION:",
                   "Indication:", "CLINICAL HISTORY:"],
    "comparison": ["COMPARISON:", "Comparison:", "COMPARISONS:"],
    "technique": ["TECHNIQUE:", "Technique:"],
    "examination": ["EXAMINATION:", "EXAM:"],
}
COMPARISON = [
    "___.", "Chest radiograph from ___.", "None.", "Prior chest radiographs from ___ and ___.",
    "CT chest from ___, which demonstrated a right pleural effusion.",
    "Portable chest radiograph obtained earlier the same day.",
    "Multiple prior radiographs, most recently ___, which showed left lower lobe atelectasis.",
]
TECHNIQUE = [
    "PA and lateral views of the chest.", "Single portable AP view of the chest.",
    "Portable semi-upright AP radiograph of the chest.", "Frontal and lateral chest radiographs.",
]
EXAMINATION = [
    "CHEST (PA AND LAT)", "CHEST (PORTABLE AP)", "CHEST PORT. LINE PLACEMENT",
    "Chest radiograph, two views.",
]
VIEW_LINES = [
    "PA AND LATERAL VIEWS OF THE CHEST", "SINGLE FRONTAL VIEW OF THE CHEST",
    "PORTABLE AP CHEST RADIOGRAPH", "AP UPRIGHT AND LATERAL VIEWS OF THE CHEST",
]
NOTIFICATION = [
    "The findings were discussed with Dr. ___ by Dr. ___ on the telephone on ___ at 3:15 PM, "
    "10 minutes after discovery of the findings.",
    "Findings were communicated to the referring physician, Dr. ___, at 9:40 a.m. on ___.",
    "These findings were discussed with the covering resident by telephone at the time of "
    "dictation.",
    "Dr. ___ was paged and notified of the findings regarding the pneumothorax at 2 pm.",
]
UNDERLYING = [
    "___ year old man with pneumonia and effusion",
    "___ year old woman s/p CABG with chest tubes",
    "___ year old man with CHF",
]
REASON = [
    "eval for infiltrate", "please assess for pneumothorax", "? edema or effusion",
]

SHAPES = (
    "findings_impression", "unheaded", "wet_read_findings", "wet_read_unheaded",
    "findings_and_impression", "numbered_impression", "view_line", "old_style", "plain",
)

# A report draws one group per slot, with these weights.
GROUP_WEIGHTS = {
    "devices": {"none": 5, "present": 4, "removed": 1, "malpositioned": 1},
    "heart": {"normal": 4, "heart_and_mediastinum_normal": 4, "enlarged": 3,
              "enlarged_stable": 2, "enlarged_with_mediastinum": 2, "borderline": 1,
              "stable_anatomy": 1, "mediastinum_widened": 1},
    "lungs": {"clear": 6, "edema": 2, "congestion": 1, "edema_resolved": 1, "consolidation": 2,
              "pneumonia": 2, "opacity": 2, "atelectasis": 3, "lesion": 1, "other": 1},
    "pleura": {"normal": 6, "effusion": 3, "effusion_uncertain": 1, "pneumothorax": 2,
               "pneumothorax_resolved": 1, "pneumothorax_uncertain": 1, "pleural_other": 1},
    "bones": {"none": 4, "normal": 3, "fracture": 1, "degenerative": 1},
}


NORMAL_GROUPS = ("none", "normal", "clear", "heart_and_mediastinum_normal")


def parse(code: str) -> dict[str, int]:
  """Hand labels of a sentence ("CM+ EF-") as {observation or "other finding": label}."""
  out: dict[str, int] = {}
  for item in code.split():
    name, value = CODES[item[:-1]], VALUES[item[-1]]
    if PRIORITY[value] > PRIORITY[out.get(name, BLANK)]:
      out[name] = value
  return out


def aggregate(final: list[str], wet_read: list[str] = ()) -> list[int]:
  """Report labels (14, in `OBSERVATIONS` order) from the hand codes of its finding sentences.

  The final report's sentences `final` win over the WET READ's for every observation they
  state; No Finding follows CheXpert's rule.
  """
  def combine(codes):
    labels: dict[str, int] = {}
    for code in codes:
      for name, value in parse(code).items():
        if PRIORITY[value] > PRIORITY[labels.get(name, BLANK)]:
          labels[name] = value
    return labels

  labels = combine(wet_read)
  labels.update(combine(final))
  row = [labels.get(name, BLANK) for name in OBSERVATIONS]
  shown = [name for name, value in labels.items()
           if name not in ("Support Devices", "No Finding") and value in (POSITIVE, UNCERTAIN)]
  row[OBSERVATIONS.index("No Finding")] = BLANK if shown else POSITIVE
  return row


def _half(items: list, half: int) -> list:
  """The sentences of one half: even positions (dev, 0) or odd positions (heldout, 1)."""
  return items[half::2]


def _choose(rng: np.random.Generator, items: list):
  return items[int(rng.integers(len(items)))]


def _draw_findings(rng: np.random.Generator, half: int) -> list[tuple[str, str, list]]:
  """(slot, group, sentences) per slot of one report; sentences are (text, code) pairs."""
  drawn = []
  normal = rng.random() < 0.3  # a normal study: only the normal groups (and devices)
  for slot, weights in GROUP_WEIGHTS.items():
    if normal and slot != "devices":
      weights = {name: w for name, w in weights.items() if name in NORMAL_GROUPS}
    names = list(weights)
    p = np.array([weights[n] for n in names], float)
    group = names[int(rng.choice(len(names), p=p / p.sum()))]
    pool = _half(FINDINGS[slot][group], half)
    if not pool:
      continue
    count = 2 if slot == "lungs" and rng.random() < 0.3 and len(pool) > 1 else 1
    picks = [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]
    drawn.append((slot, group, picks))
  return drawn


def _impression(rng: np.random.Generator, drawn, half: int) -> list[tuple[str, str]]:
  """Impression sentences: the abnormal findings restated (another sentence of the same group
  when there is one), or a normal impression."""
  abnormal = [(slot, group, picks) for slot, group, picks in drawn
              if group not in NORMAL_GROUPS]
  if not abnormal:
    return [_choose(rng, _half(NORMAL_IMPRESSION, half))]
  out = []
  for slot, group, picks in abnormal:
    # Heart and pleura: another wording of the same finding; lungs, devices, bones: the same
    # sentence (another one would add a finding that the findings do not state).
    pool = [s for s in _half(FINDINGS[slot][group], half) if s not in picks]
    another = slot in ("heart", "pleura") and pool and rng.random() < 0.6
    out.append(_choose(rng, pool) if another else picks[0])
  if rng.random() < 0.25:
    out.append(_choose(rng, _half(STABLE_IMPRESSION, half)))
  return out


def _wrap(text: str, rng: np.random.Generator) -> str:
  """A paragraph wrapped at a fixed width half of the time, as MIMIC-CXR reports are."""
  if rng.random() < 0.5:
    return "\n".join(textwrap.wrap(text, width=int(rng.integers(60, 80))))
  return text


def _header_lines(rng: np.random.Generator) -> list[str]:
  lines = []
  if rng.random() < 0.6:
    lines += [f"{_choose(rng, HEADER_NAMES['examination'])}  {_choose(rng, EXAMINATION)}", ""]
  indication = _choose(rng, INDICATION)
  lines += [_wrap(f"{_choose(rng, HEADER_NAMES['indication'])}  {indication}", rng), ""]
  if rng.random() < 0.6:
    lines += [f"{_choose(rng, HEADER_NAMES['technique'])}  {_choose(rng, TECHNIQUE)}", ""]
  lines += [_wrap(f"{_choose(rng, HEADER_NAMES['comparison'])}  {_choose(rng, COMPARISON)}",
                  rng), ""]
  return lines


def _numbered(sentences: list[str]) -> str:
  return "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, start=1))


# Wet read sentences that the final report overrules: each is used only in a report whose final
# text does not state its observation, and the final report then states it otherwise.
WET_READ_OVERRULED = [
    ("Possible small left apical pneumothorax.", "PX?",
     "The left apex is clear; no pneumothorax.", "PX-"),
    ("Questionable right lower lobe pneumonia.", "PN?",
     "No pneumonia; the density at the right base on the wet read is a nipple shadow.", "PN-"),
    ("Possible small right pleural effusion.", "EF?",
     "There is no right pleural effusion.", "EF-"),
    ("No pneumothorax.", "PX-",
     "On review, there is a tiny right apical pneumothorax.", "PX+"),
    ("New left lower lobe consolidation.", "CO+",
     "The left lower lobe is clear without consolidation.", "CO-"),
    ("Probable mild pulmonary edema.", "ED?",
     "No pulmonary edema on the final review.", "ED-"),
]
WET_READ_TIMES = ["___ ___ ___ 10:12 PM", "___ ___ ___ 6:45 AM", "___ ___ ___ 1:30 PM", ""]


def _wet_read(rng: np.random.Generator, impression, final_codes, half: int):
  """A WET READ block: the impression, sometimes with one sentence that the final report then
  overrules; (lines, wet read codes, final report sentence or None)."""
  sentences = [(s, c) for s, c in impression]
  correction = None
  stated = {name for code in final_codes for name in parse(code)}
  pool = [row for row in _half(WET_READ_OVERRULED, half) if not set(parse(row[1])) & stated]
  if pool and rng.random() < 0.5:
    wet, wet_code, final, final_code = _choose(rng, pool)
    sentences.insert(int(rng.integers(len(sentences) + 1)), (wet, wet_code))
    correction = (final, final_code)
  time = _choose(rng, WET_READ_TIMES)
  body = (_numbered([s for s, _ in sentences]) if len(sentences) > 1 and rng.random() < 0.6
          else "  ".join(s for s, _ in sentences))
  return [f"WET READ: {time}".rstrip(), body], [c for _, c in sentences], correction


def make_report(rng: np.random.Generator, half: int, shape: str) -> tuple[str, list[int]]:
  """One report of `shape` from the sentences of `half`, and its hand labels."""
  drawn = _draw_findings(rng, half)
  findings = [s for _, _, picks in drawn for s in picks]
  impression = _impression(rng, drawn, half)
  findings_codes = [c for _, c in findings]
  impression_codes = [c for _, c in impression]
  wet_codes: list[str] = []
  lines: list[str] = []
  findings_text = " ".join(s for s, _ in findings)
  impression_text = " ".join(s for s, _ in impression)
  if shape in ("wet_read_findings", "wet_read_unheaded"):
    wet_lines, wet_codes, correction = _wet_read(rng, impression,
                                                 findings_codes + impression_codes, half)
    if correction is not None:
      findings_text += f" {correction[0]}"
      findings_codes.append(correction[1])
    lines += wet_lines + ["_" * 78, "", " " * 33 + "FINAL REPORT"]
  if shape == "old_style":
    lines += ["FINAL REPORT", "UNDERLYING MEDICAL CONDITION:", f"  {_choose(rng, UNDERLYING)}",
              "REASON FOR THIS EXAMINATION:", f"  {_choose(rng, REASON)}", ""]
  if shape != "plain":
    lines += _header_lines(rng)
  if shape in ("findings_impression", "wet_read_findings"):
    lines += ["FINDINGS:", "", _wrap(findings_text, rng), "", "IMPRESSION:", "",
              _wrap(impression_text, rng)]
  elif shape in ("unheaded", "wet_read_unheaded", "old_style"):
    lines += [_wrap(findings_text, rng)]
    if rng.random() < 0.6:
      lines += ["", "IMPRESSION:  " + impression_text]
    else:  # no impression written: its sentences state nothing
      impression_codes = []
  elif shape == "findings_and_impression":
    lines += [_choose(rng, ["FINDINGS AND IMPRESSION:", "FINDINGS/IMPRESSION:",
                            "IMPRESSION:"]), _wrap(f"{findings_text} {impression_text}", rng)]
  elif shape == "numbered_impression":
    lines += ["FINDINGS:", _wrap(findings_text, rng), "",
              _choose(rng, ["IMPRESSION", "IMPRESSION:", "Impression:"]),
              _numbered([s for s, _ in impression])]
  elif shape == "view_line":
    lines += [_choose(rng, VIEW_LINES), "", _wrap(findings_text, rng), "",
              "IMPRESSION:", _numbered([s for s, _ in impression])]
  elif shape == "plain":
    lines += [f"{findings_text} {impression_text}"]
  if shape != "plain" and rng.random() < 0.25:
    note = _choose(rng, NOTIFICATION)
    lines += ["", _wrap(_choose(rng, ["NOTIFICATION:  ", ""]) + note, rng)]
  return ("\n".join(lines).strip() + "\n",
          aggregate(findings_codes + impression_codes, wet_codes))


def corpus() -> list[dict]:
  """All reports: `REPORTS_PER_HALF` per half, the shapes in turn."""
  rows = []
  for half, name in enumerate(("dev", "heldout")):
    rng = np.random.default_rng([SEED, half])
    for i in range(REPORTS_PER_HALF):
      shape = SHAPES[i % len(SHAPES)]
      text, labels = make_report(rng, half, shape)
      rows.append({"id": f"{name}-{i:03d}", "half": name, "shape": shape, "report": text,
                   "labels": labels})
  return rows


def main() -> None:
  PATH.parent.mkdir(parents=True, exist_ok=True)
  with open(PATH, "w", encoding="utf-8") as f:
    for row in corpus():
      f.write(json.dumps(row) + "\n")
  print(f"wrote {PATH}")


if __name__ == "__main__":
  main()
