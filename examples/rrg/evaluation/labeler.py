"""A rule-based, CheXpert-style labeler for chest radiograph reports.

`label_report` maps a report to one label per CheXpert observation (`OBSERVATIONS`), each one of
`BLANK` (not mentioned), `POSITIVE`, `NEGATIVE` or `UNCERTAIN`, in stages that mirror the
CheXpert labeler (Irvin et al., AAAI 2019):

0. *Sections* (`report_sections`, `findings_text`): a whole report is read as it is written.
   What is not a finding of this study is left out: the indication, history, reason for exam,
   clinical information, comparison, technique, examination, notification and recommendation
   sections (each up to the next header, a blank line or a new sentence on a new line), and,
   wherever they stand, sentences that report a notification ("findings were discussed with
   Dr. ___ ...", "... communicated to ...", "paged", "by telephone"). Everything else is
   labelled: FINDINGS, IMPRESSION (also numbered, or without ":"), FINDINGS AND IMPRESSION,
   WET READ blocks, paragraphs under no header after the header lines, all-caps view lines.
   Lines wrapped at a fixed width are joined back into their sentences. *The final report wins
   over a wet read*: a WET READ block (a preliminary read, before FINAL REPORT) is labelled on
   its own, and for every observation (or other finding) that the final report states, the
   final report's label is kept and the wet read's is dropped; the wet read still contributes
   what the final report does not state.
1. *Mention extraction*: phrases from a fixed list per observation, longest phrase first.
   Support devices include lines, catheters, ports, pacers, wires and clips; contours and the
   cardiomediastinal silhouette mention Enlarged Cardiomediastinum. Phrases that contain such a
   word but name nothing ("pleural line", "diaphragmatic contour") are matched and ignored.
   A second list names findings outside the 14 (CheXpert's No Finding mentions: emphysema,
   granuloma, degenerative change, scarring, hernia, ...).
2. *Classification* of every mention by negation and uncertainty cues in its clause: a cue
   placed before a mention ("no", "without", "possible", "cannot exclude", ...) reaches forward
   up to the next verb (such as "is") or the next cue; a cue placed after it ("is normal",
   "has resolved", "is not excluded", ...) reaches back to the start of the clause, unless the
   cue already reaches a later mention ("opacity, likely atelectasis": only atelectasis is
   uncertain; "versus" and "?" reach both ways). Uncertainty cues that contain a negation
   ("cannot exclude", "not excluded", "no new") win over negation, negation wins over the other
   uncertainty cues. Stability phrasing of follow-up reports ("no change in", "unchanged",
   "not (significantly) changed", "has not changed", "stable", "again seen", ...) is a cue of
   its own that keeps a finding as it is ("no significant change in moderate cardiomegaly" is
   positive); only about the heart or the mediastinum without "enlarged" ("heart size is
   stable") it is uncertain, as in CheXpert. Vascular congestion, pulmonary congestion,
   vascular prominence and indistinctness are uncertain edema when stated plainly (CheXpert).
3. *Aggregation* over mentions: positive > uncertain > negative > blank; "chf" or "heart failure"
   adds an uncertain cardiomegaly mention; No Finding is positive iff no observation other than
   Support Devices, and no other finding, is positive or uncertain, and blank otherwise.

Sentences end at ".", ";", "!" or a new line. A sentence is split into clauses before words such
as "but", "however", "which", "with", "without", and at "," or "and" when a new clause starts
there ("..., the heart is enlarged") or when both sides carry their own verb.

This labeler is a transparent approximation for offline use, not CheXpert's NegBio dependency
rules. Published clinical efficacy numbers use CheXbert (Smit et al., EMNLP 2020); feed its
output through `load_labels_file` to evaluate with it.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

OBSERVATIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
)
BLANK, POSITIVE, NEGATIVE, UNCERTAIN = 0, 1, 2, 3

_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}
_NO_FINDING = _INDEX["No Finding"]
_SUPPORT_DEVICES = _INDEX["Support Devices"]
_CARDIOMEGALY = _INDEX["Cardiomegaly"]

# Aggregation priority (CheXpert): positive > uncertain > negative > blank.
_PRIORITY = {BLANK: 0, NEGATIVE: 1, UNCERTAIN: 2, POSITIVE: 3}

_MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        "cardiomediastinum", "enlarged cardiomediastinum", "cardiomediastinal",
        "cardiomediastinal silhouette", "cardiomediastinal contour", "cardiomediastinal contours",
        "mediastinum", "mediastinal silhouette", "mediastinal contour", "mediastinal contours",
        "mediastinal widening", "widened mediastinum", "mediastinal configuration",
        "contour", "contours", "hilar contour", "hilar contours", "pericardial silhouette",
    ),
    "Cardiomegaly": (
        "cardiomegaly", "heart", "the heart", "heart size", "cardiac size", "enlarged heart",
        "cardiac enlargement", "cardiac silhouette", "cardiac contour", "cardiac contours",
        "cardiac shadow",
    ),
    "Lung Opacity": (
        "opacity", "opacities", "opacification", "opacifications", "infiltrate", "infiltrates",
        "infiltration", "airspace disease", "air space disease", "haziness", "haze", "density",
        "densities", "ground glass", "reticular markings", "interstitial markings",
    ),
    "Lung Lesion": (
        "nodule", "nodules", "nodular opacity", "nodular opacities", "nodular density",
        "nodular densities", "mass", "masses", "cavitary lesion", "tumor", "neoplasm",
        "carcinoma", "lump",
    ),
    "Edema": (
        "edema", "vascular congestion", "pulmonary vascular congestion", "pulmonary congestion",
        "congestion", "vascular prominence", "indistinctness", "heart failure", "chf",
        "cephalization", "kerley b lines", "kerley lines", "fluid overload",
    ),
    "Consolidation": ("consolidation", "consolidations", "consolidative opacity"),
    "Pneumonia": (
        "pneumonia", "pneumonias", "bronchopneumonia", "infection", "infectious process",
    ),
    "Atelectasis": (
        "atelectasis", "atelectases", "atelectatic", "collapse", "volume loss",
    ),
    "Pneumothorax": (
        "pneumothorax", "pneumothoraces", "hydropneumothorax",
    ),
    "Pleural Effusion": (
        "effusion", "effusions", "pleural fluid", "hydrothorax",
    ),
    "Pleural Other": (
        "pleural thickening", "pleural scarring", "pleural scar", "pleural plaque",
        "pleural plaques", "pleural calcification", "fibrothorax", "fibrosis",
        "pleuroparenchymal scarring", "pleural parenchymal scarring", "pleural parenchymal scar",
        "apical cap", "apical capping",
    ),
    "Fracture": ("fracture", "fractures", "fractured"),
    "Support Devices": (
        "tube", "tubes", "catheter", "catheters", "line", "lines", "central line",
        "central venous line", "picc", "port", "ports", "mediport", "portacath", "pacemaker",
        "pacer", "pacing wires", "wire", "wires", "sternotomy wires", "clip", "clips",
        "support device", "support devices", "device", "devices", "stent", "stents",
        "defibrillator", "icd", "aicd", "hardware", "screw", "screws", "coil", "coils",
        "drain", "drains", "cannula", "apparatus", "valve replacement", "prosthetic valve",
        "dobhoff", "swan ganz", "tracheostomy", "heart valve", "heart valves",
    ),
}

# Findings outside the 14 observations (CheXpert's "No Finding" mention list, in our words):
# positive or uncertain, they make No Finding blank; they label no observation.
_OTHER_FINDING = "other finding"
_OTHER_FINDINGS: tuple[str, ...] = (
    "emphysema", "emphysematous", "copd", "chronic obstructive", "hyperinflation",
    "hyperinflated", "hyperexpansion", "hyperexpanded", "bulla", "bullae", "bullous",
    "granuloma", "granulomas", "granulomatous", "calcification", "calcifications", "calcified",
    "degenerative", "degeneration", "scoliosis", "kyphosis", "kyphotic", "osteopenia",
    "osteopenic", "osteophyte", "osteophytes", "osteophytosis", "scar", "scarring",
    "elevation", "elevated", "eventration", "hernia", "thickening", "peribronchial cuffing",
    "cuffing", "atherosclerosis", "atherosclerotic", "metastasis", "metastases", "metastatic",
    "pneumomediastinum", "pneumoperitoneum", "contusion", "hematoma", "hemorrhage",
    "aspiration", "bronchitis", "bronchiolitis", "airways disease", "airway disease",
    "asthma", "bronchospasm", "inflammation", "inflammatory", "prominence", "prominent",
    "pulmonary hypertension", "deformity", "deformities", "irregular lucency", "thoracentesis",
    "radiopaque", "bullet", "aerophagia", "arthropathy", "osteodystrophy",
    "plaque", "plaques", "blunting", "blunted",
)

# Phrases that contain a mention word but name no observation; matched so that their words
# are not read as mentions ("pleural line" is not a line, "diaphragmatic contour" not the
# mediastinum's).
_NOT_MENTIONS: tuple[str, ...] = (
    "pleural line", "pleural lines", "skin fold", "skin folds", "skin line", "septal lines",
    "junction line", "paraspinal line", "azygoesophageal line", "diaphragmatic contour",
    "diaphragmatic contours", "hemidiaphragm contour", "hemidiaphragmatic contour",
    "costophrenic angle", "costophrenic angles", "aortic contour", "aortic knob",
    "heart border", "heart borders", "the heart border", "the heart borders", "cardiac border",
    "cardiac borders", "right heart", "left heart", "over the heart", "overlying the heart",
    "behind the heart",
)

# Mentions that name the heart or mediastinum without saying whether it is enlarged: "stable"
# or "unchanged" about them is uncertain (CheXpert), unless the clause says "enlarged".
_ANATOMY: frozenset[str] = frozenset({
    "heart", "the heart", "heart size", "cardiac size", "cardiac silhouette", "cardiac contour",
    "cardiac contours", "cardiac shadow", "cardiomediastinum", "cardiomediastinal",
    "cardiomediastinal silhouette", "cardiomediastinal contour", "cardiomediastinal contours",
    "mediastinum", "mediastinal silhouette", "mediastinal contour", "mediastinal contours",
    "mediastinal configuration", "contour", "contours", "hilar contour", "hilar contours",
    "pericardial silhouette",
})
_ENLARGED: frozenset[str] = frozenset({
    "enlarged", "enlargement", "widened", "widening", "large", "prominent", "cardiomegaly",
})

# Mentions that are uncertain even when stated plainly (CheXpert: vascular congestion,
# pulmonary congestion, indistinctness and vascular prominence suggest edema, no more).
_UNCERTAIN_MENTIONS: frozenset[str] = frozenset({
    "vascular congestion", "pulmonary vascular congestion", "pulmonary congestion",
    "congestion", "vascular prominence", "indistinctness",
})

# Mentions of edema that, when positive or uncertain, also make cardiomegaly uncertain.
_HEART_FAILURE = ("heart failure", "chf")

# Cue kinds.
_NEG_PRE, _NEG_POST = "neg_pre", "neg_post"
_UNC_PRE, _UNC_POST = "unc_pre", "unc_post"
_STRONG_UNC_PRE, _STRONG_UNC_POST = "strong_unc_pre", "strong_unc_post"
_STABLE_PRE, _STABLE_POST = "stable_pre", "stable_post"

# Stability phrasing of follow-up reports: it keeps a finding as it is. Listed as cues so that
# their "no" / "not" / "without" is not read as a negation (the longest phrase wins).
_STABILITY: tuple[str, ...] = (
    "no change", "no change in", "no significant change", "no significant change in",
    "no interval change", "no interval change in", "no significant interval change",
    "no significant interval change in", "no appreciable change", "no appreciable change in",
    "no substantial change in", "no definite change in", "without change",
    "without change in", "without significant change", "without significant change in",
    "without interval change", "without interval change in", "not changed",
    "not significantly changed", "not substantially changed", "not appreciably changed",
    "not changed significantly", "unchanged", "grossly unchanged", "essentially unchanged",
    "stable", "grossly stable", "essentially stable", "again seen", "again noted",
    "again demonstrated", "again identified", "similar", "similar to prior",
    "little change", "little interval change",
)

_CUES: dict[str, tuple[str, ...]] = {
    _STABLE_PRE: _STABILITY,
    _STABLE_POST: _STABILITY,
    _STRONG_UNC_PRE: (
        "cannot exclude", "can not exclude", "cannot rule out", "can not rule out",
        "not exclude", "no new",
    ),
    _STRONG_UNC_POST: (
        "not excluded", "cannot be excluded", "can not be excluded", "not ruled out",
        "cannot be ruled out", "can not be ruled out",
    ),
    _NEG_PRE: (
        "no", "not", "without", "negative for", "free of", "clear of", "absence of",
        "resolution of", "resolved", "removal of", "removed", "no longer", "neither", "nor",
        "normal", "never", "to suggest",
    ),
    _NEG_POST: (
        "not", "absent", "resolved", "removed", "normal", "unremarkable", "negative",
        "no longer", "cleared", "ruled out",
    ),
    _UNC_PRE: (
        "may", "might", "could", "possible", "possibly", "probable", "probably", "likely",
        "suspicious for", "suspected", "suspect", "suggestive of", "suggest", "suggests",
        "suggesting", "concerning for", "concern for", "worrisome for", "question of",
        "questionable", "presumed", "borderline", "equivocal", "differential", "rule out",
        "versus", "vs", "?", "indeterminate",
    ),
    _UNC_POST: (
        "may be", "might be", "could be", "possible", "possibly", "likely", "suspected",
        "questionable", "questioned", "borderline", "equivocal", "versus", "vs", "?",
        "indeterminate", "uncertain",
    ),
}

# Cues that apply in both directions even when they reach a later mention ("a versus b").
_BIDIRECTIONAL = frozenset({"versus", "vs", "?"})
# Words that open a new clause, so that no cue reaches across them.
_CLAUSE_BREAKERS = frozenset({
    "but", "however", "although", "though", "whereas", "while", "which", "except", "aside",
    "apart", "otherwise", "with", "without",
})
# Words after "," or "and" that open a new clause.
_CLAUSE_OPENERS = frozenset({"the", "there", "no"})
# Verbs: they end the forward reach of a cue placed before a mention.
_VERBS = frozenset({
    "is", "are", "was", "were", "appears", "appear", "remains", "remain", "seems", "seem",
    "has", "have",
})
_CONJUNCTIONS = frozenset({",", "and"})

_TOKEN_RE = re.compile(r"[a-z0-9]+|[?,]")
_SENTENCE_RE = re.compile(r"[.;!\n]+")
_DECIMAL_RE = re.compile(r"(\d)\.(\d)")


def _phrase_index() -> dict[tuple[str, ...], list[tuple[str, str]]]:
  """Maps each phrase's tokens to its (kind, value) entries.

  kind is "mention" (value: the observation, or `_OTHER_FINDING`), "cue" (value: the cue kind)
  or "none" (a phrase that names nothing); a phrase that is a cue of two kinds (e.g. "not"
  before and after a mention) has two entries.
  """
  index: dict[tuple[str, ...], list[tuple[str, str]]] = {}
  groups_by_kind = (
      ("mention", {**_MENTIONS, _OTHER_FINDING: _OTHER_FINDINGS}),
      ("cue", _CUES),
      ("none", {"": _NOT_MENTIONS}),
  )
  for kind, groups in groups_by_kind:
    for value, phrases in groups.items():
      for phrase in phrases:
        index.setdefault(tuple(phrase.split()), []).append((kind, value))
  return index


_PHRASE_INDEX = _phrase_index()
_MAX_PHRASE_LEN = max(len(tokens) for tokens in _PHRASE_INDEX)


# Section headers of whole reports, at the start of the text, of a line or of a sentence, followed
# by ":" or alone on their line ("IMPRESSION"). Excluded sections hold what is not a finding of
# this study; every other section (and text under no header) is labelled.
_EXCLUDED_SECTIONS = (
    "history", "clinical history", "medical history", "indication", "indications",
    "clinical indication", "reason for exam", "reason for examination", "reason for study",
    "reason for this examination", "underlying medical condition", "medical condition",
    "comparison", "comparisons", "technique", "examination", "exam", "procedure",
    "clinical information", "clinical data", "notification", "notifications", "communication",
    "recommendation", "recommendations", "type of examination", "reference exam",
)
_WET_READ = "wet read"
_FINAL_REPORT = "final report"
_LABELLED_SECTIONS = (
    "findings", "finding", "impression", "impressions", "conclusion", "conclusions",
    "findings and impression", "impression and findings", "findings impression",
    "findings/impression", "addendum",
    "provisional findings impression", "pfi", _FINAL_REPORT, _WET_READ,
)
_SECTION_NAMES = "|".join(sorted((re.escape(h).replace(r"\ ", r"\s+")
                                  for h in (*_LABELLED_SECTIONS, *_EXCLUDED_SECTIONS)),
                                 key=len, reverse=True))
_HEADER_RE = re.compile(
    r"(?:^|(?<=[\n.;]))[ \t]*"
    r"(?:(?P<wet>wet\s+read(?:\s+version\s*#?\s*\d+)?)[ \t]*:?"
    r"|(?P<name>" + _SECTION_NAMES + r")(?:\(s\))?[ \t]*(?::|(?=[ \t]*(?:\n|$))))"
    r"|(?:^|(?<=\n))[ \t]*(?P<rule>_{5,})[ \t]*(?=\n|$)",
    re.IGNORECASE)
_LINE_END_RE = re.compile(r"[.!:]\s*$")
# A line that starts with a request continues an indication ("Assess for pulmonary edema.").
_REQUEST_RE = re.compile(
    r"(?:assess|evaluate|eval|please|rule\s+out|r/o|question|\?|to\s+evaluate|check|confirm"
    r"|s/p|status\s+post|history|hx|follow|now|with)\b|\?", re.IGNORECASE)

# Sentences that report a notification or a conversation about the findings ("Findings were
# discussed with Dr. ___ at 3 pm"): not labelled, wherever they stand.
_NOTIFICATION_RE = re.compile(
    r"\b(?:discussed|communicated|conveyed|relayed|reported|spoke|spoken|telephoned|paged"
    r"|notified|informed)\s+(?:with|to|by|via|at)\b|\b(?:notified|paged|telephoned|informed)\b"
    r"|\btelephone\b|\bby\s+phone\b|\bvia\s+phone\b|\bcalled\s+to\b",
    re.IGNORECASE)


class Section(NamedTuple):
  """A part of a whole report: its header (lower case, "" for none), text and standing.

  `labelled` says whether its text is a finding of this study; `wet_read` whether it belongs to
  a preliminary read that precedes the final report.
  """

  header: str
  text: str
  labelled: bool
  wet_read: bool


def _excluded_end(text: str, all_caps: bool) -> int:
  """Where an excluded section's text ends: at a blank line, or at a new line that does not
  continue a wrapped line (the line before ends a sentence, or the new one starts with a capital
  letter, unless the whole report is in capitals) and does not start with a request ("Assess
  for ...", "Evaluate ...", "Please ...", "?", "s/p", ...)."""
  start = len(text) - len(text.lstrip())
  position = start
  for line in text[start:].split("\n")[:-1]:
    position += len(line) + 1
    rest = text[position:]
    following = rest.lstrip(" \t")
    if not following.strip() or following.startswith("\n"):
      return position
    if _REQUEST_RE.match(following):
      continue
    if _LINE_END_RE.search(line) or (not all_caps and following[0].isupper()):
      return position
  return len(text)


def report_sections(report: str) -> list[Section]:
  """Splits a whole report into sections, in reading order.

  Headers are read case-insensitively at the start of the text, of a line or of a sentence,
  followed by ":" or alone on their line (FINDINGS, IMPRESSION, FINDINGS AND IMPRESSION,
  CONCLUSION, INDICATION, HISTORY, REASON FOR EXAM, CLINICAL INFORMATION, COMPARISON, TECHNIQUE,
  EXAMINATION, NOTIFICATION, RECOMMENDATION(S), FINAL REPORT, WET READ, ...). Text under an
  excluded header (indication, history, reason for exam, clinical information, comparison,
  technique, examination, notification, recommendation) is not labelled up to the next header,
  a blank line, or a new line that starts a new sentence rather than continuing a wrapped line;
  what follows is labelled (MIMIC-CXR's unheaded findings paragraphs after the header lines).
  Everything else is labelled: the findings, impressions (also numbered), WET READ blocks, text
  before the first header, view lines such as "PA AND LATERAL VIEWS OF THE CHEST". A WET READ
  block ends at FINAL REPORT, at a line of underscores or at the next other header.
  """
  all_caps = not any(c.islower() for c in report)
  sections = []
  header, labelled, wet_read, position = "", True, False, 0
  for match in [*_HEADER_RE.finditer(report), None]:
    end = match.start() if match is not None else len(report)
    text = report[position:end]
    if labelled:
      sections.append(Section(header, text, True, wet_read))
    else:
      split = _excluded_end(text, all_caps)
      sections.append(Section(header, text[:split], False, wet_read))
      if text[split:].strip():
        sections.append(Section("", text[split:], True, wet_read))
    if match is None:
      break
    position = match.end()
    if match.group("wet"):
      header, labelled, wet_read = _WET_READ, True, True
    elif match.group("rule"):
      header, labelled, wet_read = "", True, False
    else:
      header = " ".join(match.group("name").lower().split())
      labelled, wet_read = header in _LABELLED_SECTIONS, False
  return [s for s in sections if s.text.strip()]


def findings_text(report: str, *, wet_read: bool | None = None) -> str:
  """The text of a report that `label_report` labels, one section per line.

  Everything but the excluded sections (`report_sections`); with `wet_read` True or False, only
  the WET READ blocks or only the rest (the final report). Notification sentences are dropped
  later, sentence by sentence.

  Example:
    >>> findings_text("INDICATION: History of pneumothorax.\\nFINDINGS: Lungs are clear.")
    'Lungs are clear.'
  """
  return "\n".join(_unwrap(s.text.strip()) for s in report_sections(report)
                   if s.labelled and (wet_read is None or s.wet_read == wet_read))


_JOINING_WORDS = frozenset({
    "and", "or", "of", "the", "with", "without", "no", "to", "in", "a", "an", "for", "at", "by",
    "is", "are",
})


def _unwrap(text: str) -> str:
  """Joins the lines of a sentence wrapped at a fixed width (as in MIMIC-CXR): a new line that
  follows no sentence end and starts with a lower-case letter, or that follows "," or a word
  such as "and", "of", "no", is a space."""
  lines = [line.strip() for line in text.split("\n")]
  out = lines[:1]
  for line in lines[1:]:
    before = out[-1]
    words = before.lower().split()
    wrapped = before and line and (
        (before[-1] not in ".;:!?" and (line[0].islower() or line[0] == "("))
        or before.endswith(",") or (words and words[-1] in _JOINING_WORDS))
    if wrapped:
      out[-1] = f"{before} {line}"
    else:
      out.append(line)
  return "\n".join(out)


def _sentences(text: str) -> list[list[str]]:
  """Lower-cased tokens of each sentence (words, numbers, "?" and ","), notifications left out."""
  text = _DECIMAL_RE.sub(r"\1\2", text.lower())
  return [tokens for part in _SENTENCE_RE.split(text)
          if not _NOTIFICATION_RE.search(part) and (tokens := _TOKEN_RE.findall(part))]


def _has_verb(tokens: Iterable[str]) -> bool:
  return any(token in _VERBS for token in tokens)


def _next_segment(tokens: Sequence[str], start: int) -> list[str]:
  """Tokens from `start` up to the next "," / "and" / clause breaker."""
  segment = []
  for token in tokens[start:]:
    if token in _CONJUNCTIONS or token in _CLAUSE_BREAKERS:
      break
    segment.append(token)
  return segment


def _starts_clause(tokens: Sequence[str], i: int, current: Sequence[str]) -> bool:
  """Whether a new clause starts at tokens[i], given the clause read so far."""
  token = tokens[i]
  if token in _CLAUSE_BREAKERS:
    return True
  if token not in _CONJUNCTIONS:
    return False
  following = tokens[i + 1] if i + 1 < len(tokens) else ""
  if following in _CLAUSE_OPENERS:
    return True
  return _has_verb(current) and _has_verb(_next_segment(tokens, i + 1))


def _clauses(tokens: Sequence[str]) -> list[list[str]]:
  """Split a sentence's tokens into clauses; the conjunction that splits is dropped."""
  clauses: list[list[str]] = []
  current: list[str] = []
  for i, token in enumerate(tokens):
    if current and _starts_clause(tokens, i, current):
      clauses.append(current)
      current = []
      if token in _CONJUNCTIONS:
        continue
    current.append(token)
  if current:
    clauses.append(current)
  return clauses


class _Match(NamedTuple):
  """A phrase found in a clause: tokens [start, end), "mention" or "cue", observation or kind."""

  start: int
  end: int
  kind: str
  value: str


def _match_phrases(clause: Sequence[str]) -> list[_Match]:
  """Non-overlapping phrases of a clause, longest first at each position.

  A cue of two kinds (e.g. "not", before or after a mention) yields two matches.
  """
  matches = []
  i = 0
  while i < len(clause):
    for length in range(min(_MAX_PHRASE_LEN, len(clause) - i), 0, -1):
      entries = _PHRASE_INDEX.get(tuple(clause[i:i + length]))
      if entries:
        matches += [_Match(i, i + length, kind, value) for kind, value in entries]
        i += length
        break
    else:
      i += 1
  return matches


def _reaches(clause: Sequence[str], cue: _Match, mention: _Match,
             cue_starts: Iterable[int]) -> bool:
  """Whether a cue placed before a mention reaches it: no verb and no other cue between."""
  between = range(cue.end, mention.start)
  return (cue.end <= mention.start and not _has_verb(clause[cue.end:mention.start])
          and not any(s in between for s in cue_starts))


def _classify(clause: Sequence[str], mention: _Match, cues: Sequence[_Match],
              claimed: set[int]) -> int:
  """Label of a mention from the cues of its clause.

  Strong uncertainty > negation > uncertainty > positive. Stability cues ("unchanged",
  "no change in", ...) leave a finding as it is, but make a mention of the heart or the
  mediastinum that does not say "enlarged" uncertain.

  A cue placed after the mention applies to it unless the cue is `claimed` (its start is in
  the set): a cue that reaches a later mention ("opacity, likely atelectasis") applies only
  forward. "versus", "vs" and "?" reach back only up to a "," ("opacity, atelectasis versus
  consolidation": the opacity is stated).
  """
  cue_starts = [cue.start for cue in cues]
  kinds = set()
  for cue in cues:
    if cue.value.endswith("_pre") and _reaches(clause, cue, mention, cue_starts):
      kinds.add(cue.value.removesuffix("_pre"))
    elif (cue.value.endswith("_post") and cue.start >= mention.end
          and cue.start not in claimed
          and not (" ".join(clause[cue.start:cue.end]) in _BIDIRECTIONAL
                   and "," in clause[mention.end:cue.start])):
      kinds.add(cue.value.removesuffix("_post"))
  if "strong_unc" in kinds:
    return UNCERTAIN
  if "neg" in kinds:
    return NEGATIVE
  if "unc" in kinds:
    return UNCERTAIN
  text = " ".join(clause[mention.start:mention.end])
  if text in _UNCERTAIN_MENTIONS:
    return UNCERTAIN
  if "stable" in kinds and text in _ANATOMY and not _ENLARGED.intersection(clause):
    return UNCERTAIN  # "heart size is unchanged": neither normal nor enlarged
  return POSITIVE


def _claimed_cues(clause: Sequence[str], mentions: Sequence[_Match],
                  cues: Sequence[_Match]) -> set[int]:
  """Starts of the cues that reach a later mention (bidirectional cues excepted)."""
  cue_starts = [cue.start for cue in cues]
  return {
      cue.start for cue in cues
      if cue.value.endswith("_pre")
      and " ".join(clause[cue.start:cue.end]) not in _BIDIRECTIONAL
      and any(_reaches(clause, cue, mention, cue_starts) for mention in mentions)
  }


def _mentions(text: str) -> list[tuple[str, str, int]]:
  """(observation, mention text, label) for every mention in the report."""
  found = []
  for sentence in _sentences(text):
    for clause in _clauses(sentence):
      matches = _match_phrases(clause)
      mentions = [m for m in matches if m.kind == "mention"]
      cues = [m for m in matches if m.kind == "cue"]
      claimed = _claimed_cues(clause, mentions, cues)
      for mention in mentions:
        label = _classify(clause, mention, cues, claimed)
        found.append((mention.value, " ".join(clause[mention.start:mention.end]), label))
  return found


def _aggregate(mentions: Iterable[tuple[str, str, int]]) -> np.ndarray:
  """CheXpert aggregation of mention labels into one label per observation."""
  labels = np.full(len(OBSERVATIONS), BLANK, np.int32)

  def add(index: int, label: int) -> None:
    if _PRIORITY[label] > _PRIORITY[int(labels[index])]:
      labels[index] = label

  other_finding = False
  for observation, text, label in mentions:
    if observation == _OTHER_FINDING:
      other_finding |= label in (POSITIVE, UNCERTAIN)
      continue
    add(_INDEX[observation], label)
    if text in _HEART_FAILURE and label in (POSITIVE, UNCERTAIN):
      add(_CARDIOMEGALY, UNCERTAIN)
  findings = np.delete(labels, [_SUPPORT_DEVICES, _NO_FINDING])
  if not (other_finding or np.isin(findings, (POSITIVE, UNCERTAIN)).any()):
    labels[_NO_FINDING] = POSITIVE
  return labels


def label_report(text: str) -> np.ndarray:
  """Labels one report with the 14 CheXpert observations.

  Args:
    text: a free-text report (raw or cleaned; case and punctuation are handled). A whole
      report is read as written (`report_sections`): indication, history, comparison,
      technique and notification are left out; a WET READ block is labelled on its own and
      the final report's label wins for every observation that the final report states.

  Returns:
    int32 array of shape (14,), in the order of `OBSERVATIONS`, with values
    `BLANK`, `POSITIVE`, `NEGATIVE` or `UNCERTAIN`.

  Example:
    >>> labels = label_report("Mild cardiomegaly. No pleural effusion or pneumothorax.")
    >>> int(labels[OBSERVATIONS.index("Cardiomegaly")]) == POSITIVE
    True
  """
  if not isinstance(text, str):
    raise TypeError(f"text must be a str, got {type(text).__name__}")
  final = _mentions(findings_text(text, wet_read=False))
  stated = {observation for observation, _, _ in final}
  wet_read = [m for m in _mentions(findings_text(text, wet_read=True)) if m[0] not in stated]
  return _aggregate(final + wet_read)


def label_reports(texts: Sequence[str]) -> np.ndarray:
  """Labels many reports: int32 array of shape (N, 14); see `label_report`."""
  if isinstance(texts, str):
    raise TypeError("texts must be a sequence of str, not a single str")
  labels = [label_report(text) for text in texts]
  if not labels:
    return np.zeros((0, len(OBSERVATIONS)), np.int32)
  return np.stack(labels)


_CHEXPERT_VALUES = {1.0: POSITIVE, 0.0: NEGATIVE, -1.0: UNCERTAIN}


def _parse_value(value: str, path: str, row_id: str, column: str) -> int:
  """Maps a CheXpert label cell (1 / 0 / -1 / blank, also 1.0 or nan) to our label."""
  cell = value.strip().lower()
  if cell in ("", "nan", "none"):
    return BLANK
  try:
    number = float(cell)
  except ValueError:
    number = None
  if number not in _CHEXPERT_VALUES:
    raise ValueError(
        f"{path}: id {row_id!r}, column {column!r}: expected 1, 0, -1 or blank, "
        f"got {value!r}")
  return _CHEXPERT_VALUES[number]


REPORT_COLUMN = "Report Impression"
"""The report column of CheXbert's input and of its `labeled_reports.csv` output."""


def _same_text(a: str, b: str) -> bool:
  return " ".join(a.split()) == " ".join(b.split())


def _labels_in_order(rows: Sequence[dict], path: str, ids: Sequence[str],
                     texts: Sequence[str]) -> np.ndarray:
  """Labels of a CSV without ids whose rows are the reports `texts`, in this order."""
  if len(rows) != len(ids) or len(texts) != len(ids):
    raise ValueError(f"{path}: {len(rows)} rows for {len(ids)} reports; a labels file without "
                     f"an id column must hold one row per report, in order")
  for number, (row, study, text) in enumerate(zip(rows, ids, texts), start=2):
    if not _same_text(row[REPORT_COLUMN] or "", text):
      raise ValueError(f"{path}: line {number} labels another report than study {study!r} "
                       f"({REPORT_COLUMN!r} is {(row[REPORT_COLUMN] or '')[:60]!r})")
  labels = [[_parse_value(row[c] or "", path, str(study), c) for c in OBSERVATIONS]
            for row, study in zip(rows, ids)]
  return np.array(labels, np.int32).reshape(len(ids), len(OBSERVATIONS))


def load_labels_file(path: str | os.PathLike, ids: Sequence[str], *,
                     id_column: str = "id", texts: Sequence[str] | None = None) -> np.ndarray:
  """Reads labels produced by an external labeler such as CheXbert.

  The file is a CSV with a header: an id column and one column per observation named as in
  `OBSERVATIONS` (other columns are ignored). Cells hold CheXpert values: 1 (positive),
  0 (negative), -1 (uncertain) or blank / nan (not mentioned).

  CheXbert's own output (`labeled_reports.csv`) has no id column: its rows follow its input
  and carry the report under `REPORT_COLUMN`. Pass the reports as `texts` to read such a file:
  its rows are then matched to `ids` in order, and each row's report must equal the text of
  its study (up to white space).

  Args:
    path: the CSV file.
    ids: the report ids whose labels to return, in this order.
    id_column: name of the id column.
    texts: the reports of `ids`, to read a file without `id_column` row by row.

  Returns:
    int32 array of shape (len(ids), 14) with values `BLANK`, `POSITIVE`, `NEGATIVE`,
    `UNCERTAIN`.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: a column is missing, a cell is not a CheXpert value, an id is repeated or
      one of `ids` is not in the file; without an id column, the rows do not match `texts`.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"labels file not found: {path}")
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    by_order = (id_column not in header and texts is not None and REPORT_COLUMN in header)
    required = OBSERVATIONS if by_order else (id_column, *OBSERVATIONS)
    missing = [c for c in required if c not in header]
    if missing:
      raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
    if by_order:
      return _labels_in_order(list(reader), path, ids, texts)
    rows: dict[str, np.ndarray] = {}
    for row in reader:
      row_id = row[id_column].strip()
      if row_id in rows:
        raise ValueError(f"{path}: id {row_id!r} appears more than once")
      rows[row_id] = np.array(
          [_parse_value(row[c] or "", path, row_id, c) for c in OBSERVATIONS], np.int32)
  absent = [str(i) for i in ids if str(i) not in rows]
  if absent:
    raise ValueError(
        f"{path}: {len(absent)} id(s) not found in column {id_column!r}, e.g. {absent[:5]}")
  if not ids:
    return np.zeros((0, len(OBSERVATIONS)), np.int32)
  return np.stack([rows[str(i)] for i in ids])
