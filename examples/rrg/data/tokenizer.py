"""Report cleaning and a word-level tokenizer, as in R2Gen (Chen et al., EMNLP 2020).

`clean_report` turns a raw IU X-Ray or MIMIC-CXR report into lower-case words and " ." sentence
separators, with R2Gen's rules for that dataset (`CLEANING_RULES`); `Tokenizer` maps such cleaned
text to fixed-length token ids and back.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

DATASETS = ("iu_xray", "mimic_cxr")


@dataclasses.dataclass(frozen=True)
class CleaningRules:
  """R2Gen's report cleaning for one dataset (`modules/tokenizers.py` there).

  R2Gen replaces a pattern a fixed number of times in a row rather than to a fixed point, so
  the number of passes is part of the rule: three passes of ".." -> "." turn runs of up to
  eight dots into one, eight passes runs of up to 256.
  """

  newlines_to_spaces: bool
  """MIMIC-CXR reports are wrapped text; IU X-Ray reports are one line each."""
  underscore_passes: int
  """Passes of "__" -> "_" (MIMIC-CXR's "___" anonymisation marks)."""
  double_space_passes: int
  """Passes of "  " -> " "."""
  double_dot_passes: int
  """Passes of ".." -> "."."""


CLEANING_RULES: dict[str, CleaningRules] = {
    "iu_xray": CleaningRules(newlines_to_spaces=False, underscore_passes=0,
                             double_space_passes=0, double_dot_passes=3),
    "mimic_cxr": CleaningRules(newlines_to_spaces=True, underscore_passes=7,
                               double_space_passes=6, double_dot_passes=8),
}

# List numbering, replaced in this order on the raw text: "1. " anywhere goes, then items 2-5
# after a sentence end, then items 2-5 after a space become sentence ends.
_NUMBERING = (("1. ", ""),
              *((f". {n}. ", ". ") for n in range(2, 6)),
              *((f" {n}. ", ". ") for n in range(2, 6)))
# Characters R2Gen deletes from a sentence: its quote/slash removals and its regular-expression
# class, whose ":-\[" is a range (":" to "[", so "<=>?@" and "A-Z" too) -- which is why hyphens
# survive ("x-ray", "right-sided").
_DELETED = str.maketrans("", "", "\"/\\'.,?;*!%^&_+():<=>@[]{}")
# Dashes and minus signs have no ASCII decomposition; they become "-" before transliteration.
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"))


def transliterate(text: str) -> str:
  """ASCII text by Unicode NFKD decomposition: accents are split off and dropped.

  Example:
    >>> transliterate("Côte d\u2019Ivoire \u2013 naïve")
    'Cote dIvoire - naive'
  """
  decomposed = unicodedata.normalize("NFKD", text.translate(_DASHES))
  return decomposed.encode("ascii", "ignore").decode("ascii")


def _repeat_replace(text: str, old: str, new: str, passes: int) -> str:
  for _ in range(passes):
    text = text.replace(old, new)
  return text


def clean_report(text: str, dataset: str) -> str:
  """Cleans a report with R2Gen's rules for `dataset`, after Unicode transliteration.

  The text is transliterated to ASCII (`transliterate`); then, as R2Gen does, new lines,
  underscores, double spaces and repeated dots are collapsed per `CLEANING_RULES[dataset]`,
  list numbering ("1. ", " 2. ") is removed, the text is lower-cased and split into sentences
  at ". ", each sentence loses the characters ``" / \\ ' . , ? ; * ! % ^ & _ + ( ) : < = > @
  [ ] { }`` (hyphens, digits and other characters stay), and the sentences are joined with
  " . " and end with " .".

  One deliberate difference: R2Gen keeps empty sentences (its emptiness test compares a string
  with a list and is always true), which become extra "." tokens; here they are dropped.

  Args:
    text: the raw report.
    dataset: "iu_xray" or "mimic_cxr".

  Returns:
    The cleaned report, e.g. "the heart is normal . no effusion ."; "" if no word is left.

  Example:
    >>> clean_report("1. The heart is normal.. 2. No right-sided effusion!", "iu_xray")
    'the heart is normal . no right-sided effusion .'
  """
  if dataset not in CLEANING_RULES:
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
  if not isinstance(text, str):
    raise TypeError(f"text must be a str, got {type(text).__name__}")
  rules = CLEANING_RULES[dataset]
  text = transliterate(text)
  if rules.newlines_to_spaces:
    text = text.replace("\n", " ")
  text = _repeat_replace(text, "__", "_", rules.underscore_passes)
  text = _repeat_replace(text, "  ", " ", rules.double_space_passes)
  text = _repeat_replace(text, "..", ".", rules.double_dot_passes)
  for old, new in _NUMBERING:
    text = text.replace(old, new)
  sentences = (" ".join(s.translate(_DELETED).split()) for s in text.strip().lower().split(". "))
  sentences = [s for s in sentences if s]
  return " . ".join(sentences) + " ." if sentences else ""


class Tokenizer:
  """Word-level tokenizer over cleaned reports (split at spaces).

  Ids: `pad_id` 0, `bos_id` 1, `eos_id` 2, `unk_id` 3, then the vocabulary words in sorted
  order.

  Example:
    >>> tok = Tokenizer.build(["the heart is normal .", "no effusion ."])
    >>> tok.decode(tok.encode("no effusion .", max_len=8))
    'no effusion .'
  """

  pad_id = 0
  bos_id = 1
  eos_id = 2
  unk_id = 3
  SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")

  def __init__(self, words: Iterable[str]):
    """Creates a tokenizer whose vocabulary is `words` (after the special tokens)."""
    words = list(words)
    clashes = set(words) & set(self.SPECIAL_TOKENS)
    if clashes:
      raise ValueError(f"words must not contain special tokens, got {sorted(clashes)}")
    if len(set(words)) != len(words):
      raise ValueError("words must be unique")
    self.id_to_token = list(self.SPECIAL_TOKENS) + words
    self.token_to_id = {token: i for i, token in enumerate(self.id_to_token)}

  @classmethod
  def build(cls, reports: Sequence[str], min_count: int = 1) -> Tokenizer:
    """Builds the vocabulary: words seen at least `min_count` times, sorted.

    Args:
      reports: cleaned reports (see `clean_report`), usually the training split only.
      min_count: frequency threshold; rarer words map to `unk_id`.
    """
    if isinstance(reports, str):
      raise TypeError("reports must be a sequence of str, not a single str")
    if min_count < 1:
      raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = collections.Counter(word for report in reports for word in report.split())
    return cls(sorted(w for w, c in counts.items()
                      if c >= min_count and w not in cls.SPECIAL_TOKENS))

  @property
  def vocab_size(self) -> int:
    """Number of ids, special tokens included."""
    return len(self.id_to_token)

  def encode(self, text: str, max_len: int) -> np.ndarray:
    """Encodes cleaned text as int32 (max_len,): [bos, tokens..., eos, pad...].

    Words beyond `max_len - 2` are dropped, so that eos is always present.
    """
    if max_len < 2:
      raise ValueError(f"max_len must be >= 2 (bos and eos), got {max_len}")
    words = text.split()[: max_len - 2]
    ids = np.full(max_len, self.pad_id, np.int32)
    ids[0] = self.bos_id
    ids[1:len(words) + 1] = [self.token_to_id.get(w, self.unk_id) for w in words]
    ids[len(words) + 1] = self.eos_id
    return ids

  def encode_batch(self, texts: Sequence[str], max_len: int) -> np.ndarray:
    """Encodes many texts: int32 (N, max_len)."""
    ids = np.zeros((len(texts), max_len), np.int32)
    for i, text in enumerate(texts):
      ids[i] = self.encode(text, max_len)
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    """Words up to the first eos, skipping pad and bos; unknown ids decode to "<unk>"."""
    words = []
    for i in np.asarray(ids).reshape(-1).tolist():
      if i == self.eos_id:
        break
      if i in (self.pad_id, self.bos_id):
        continue
      in_range = 0 <= i < self.vocab_size
      words.append(self.id_to_token[i] if in_range else self.SPECIAL_TOKENS[self.unk_id])
    return " ".join(words)

  def decode_batch(self, ids: np.ndarray) -> list[str]:
    """Decodes each row of an (N, T) array of ids."""
    return [self.decode(row) for row in np.asarray(ids)]

  def save(self, path: str | os.PathLike) -> None:
    """Writes the vocabulary (without special tokens) as JSON."""
    with open(path, "w", encoding="utf-8") as f:
      json.dump({"words": self.id_to_token[len(self.SPECIAL_TOKENS):]}, f)

  @classmethod
  def load(cls, path: str | os.PathLike) -> Tokenizer:
    """Reads a vocabulary written by `save`."""
    with open(path, encoding="utf-8") as f:
      return cls(json.load(f)["words"])
