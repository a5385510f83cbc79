"""A rule-based, CheXpert-style labeler for chest radiograph reports.

`label_report` maps a report to one label per CheXpert observation (`OBSERVATIONS`), each one of
`BLANK` (not mentioned), `POSITIVE`, `NEGATIVE` or `UNCERTAIN`, in three stages that mirror the
CheXpert labeler (Irvin et al., AAAI 2019):

1. *Mention extraction*: phrases from a fixed list per observation, longest phrase first.
2. *Classification* of every mention by negation and uncertainty cues in its clause: a cue
   placed before a mention ("no", "without", "possible", "cannot exclude", ...) reaches forward
   up to the next verb (such as "is") or the next cue; a cue placed after it ("is normal",
   "has resolved", "is not excluded", ...) reaches back to the start of the clause, unless the
   cue already reaches a later mention ("opacity, likely atelectasis": only atelectasis is
   uncertain; "versus" and "?" reach both ways). Uncertainty cues that contain a negation
   ("cannot exclude", "not excluded", "no new") win over negation, negation wins over the other
   uncertainty cues.
3. *Aggregation* over mentions: positive > uncertain > negative > blank; "chf" or "heart failure"
   adds an uncertain cardiomegaly mention; No Finding is positive iff no observation other than
   Support Devices is positive or uncertain, and blank otherwise.

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
        "cardiomediastinum", "enlarged cardiomediastinum", "cardiomediastinal silhouette",
        "cardiomediastinal contour", "cardiomediastinal contours", "mediastinum",
        "mediastinal silhouette", "mediastinal contour", "mediastinal contours",
        "mediastinal widening", "widened mediastinum", "mediastinal configuration",
    ),
    "Cardiomegaly": (
        "cardiomegaly", "the heart", "heart size", "cardiac size", "enlarged heart",
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
        "edema", "vascular congestion", "pulmonary congestion", "congestion", "heart failure",
        "chf", "cephalization", "kerley b lines", "fluid overload",
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
        "pleural plaques", "pleural calcification", "fibrothorax",
    ),
    "Fracture": ("fracture", "fractures", "fractured"),
    "Support Devices": (
        "tube", "tubes", "catheter", "catheters", "central line", "central venous line",
        "picc", "pacemaker", "pacer", "support device", "support devices", "sternotomy wires",
        "port", "stent", "defibrillator",
    ),
}

# Mentions of edema that, when positive or uncertain, also make cardiomegaly uncertain.
_HEART_FAILURE = ("heart failure", "chf")

# Cue kinds.
_NEG_PRE, _NEG_POST = "neg_pre", "neg_post"
_UNC_PRE, _UNC_POST = "unc_pre", "unc_post"
_STRONG_UNC_PRE, _STRONG_UNC_POST = "strong_unc_pre", "strong_unc_post"

_CUES: dict[str, tuple[str, ...]] = {
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

  kind is "mention" (value: the observation) or "cue" (value: the cue kind); a phrase that is a
  cue of two kinds (e.g. "not" before and after a mention) has two entries.
  """
  index: dict[tuple[str, ...], list[tuple[str, str]]] = {}
  for kind, groups in (("mention", _MENTIONS), ("cue", _CUES)):
    for value, phrases in groups.items():
      for phrase in phrases:
        index.setdefault(tuple(phrase.split()), []).append((kind, value))
  return index


_PHRASE_INDEX = _phrase_index()
_MAX_PHRASE_LEN = max(len(tokens) for tokens in _PHRASE_INDEX)


def _sentences(text: str) -> list[list[str]]:
  """Lower-cased tokens of each sentence (words, numbers, "?" and ",")."""
  text = _DECIMAL_RE.sub(r"\1\2", text.lower())
  return [tokens for part in _SENTENCE_RE.split(text) if (tokens := _TOKEN_RE.findall(part))]


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

  A cue placed after the mention applies to it unless the cue is `claimed` (its start is in
  the set): a cue that reaches a later mention ("opacity, likely atelectasis") applies only
  forward.
  """
  cue_starts = [cue.start for cue in cues]
  kinds = set()
  for cue in cues:
    if cue.value.endswith("_pre") and _reaches(clause, cue, mention, cue_starts):
      kinds.add(cue.value.removesuffix("_pre"))
    elif (cue.value.endswith("_post") and cue.start >= mention.end
          and cue.start not in claimed):
      kinds.add(cue.value.removesuffix("_post"))
  if "strong_unc" in kinds:
    return UNCERTAIN
  if "neg" in kinds:
    return NEGATIVE
  if "unc" in kinds:
    return UNCERTAIN
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

  for observation, text, label in mentions:
    add(_INDEX[observation], label)
    if text in _HEART_FAILURE and label in (POSITIVE, UNCERTAIN):
      add(_CARDIOMEGALY, UNCERTAIN)
  findings = np.delete(labels, [_SUPPORT_DEVICES, _NO_FINDING])
  if not np.isin(findings, (POSITIVE, UNCERTAIN)).any():
    labels[_NO_FINDING] = POSITIVE
  return labels


def label_report(text: str) -> np.ndarray:
  """Labels one report with the 14 CheXpert observations.

  Args:
    text: a free-text report (raw or cleaned; case and punctuation are handled).

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
  return _aggregate(_mentions(text))


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


def load_labels_file(path: str | os.PathLike, ids: Sequence[str], *,
                     id_column: str = "id") -> np.ndarray:
  """Reads labels produced by an external labeler such as CheXbert.

  The file is a CSV with a header: an id column and one column per observation named as in
  `OBSERVATIONS` (other columns are ignored). Cells hold CheXpert values: 1 (positive),
  0 (negative), -1 (uncertain) or blank / nan (not mentioned).

  Args:
    path: the CSV file.
    ids: the report ids whose labels to return, in this order.
    id_column: name of the id column.

  Returns:
    int32 array of shape (len(ids), 14) with values `BLANK`, `POSITIVE`, `NEGATIVE`,
    `UNCERTAIN`.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: a column is missing, a cell is not a CheXpert value, an id is repeated or
      one of `ids` is not in the file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"labels file not found: {path}")
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    missing = [c for c in (id_column, *OBSERVATIONS) if c not in header]
    if missing:
      raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
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
