"""Report cleaning and a word-level tokenizer, as in R2Gen (Chen et al., EMNLP 2020).

`clean_report` turns a raw IU X-Ray or MIMIC-CXR report into lower-case words and " ." sentence
separators; `Tokenizer` maps such cleaned text to fixed-length token ids and back.
"""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

DATASETS = ("iu_xray", "mimic_cxr")

_NUMBERING_RE = re.compile(r"(?:^|(?<=[\s.]))\d+\.\s")  # list numbering: "1. ", " 2. "
_REPEATED_DOTS_RE = re.compile(r"\.{2,}")
_REPEATED_UNDERSCORES_RE = re.compile(r"_{2,}")
_SENTENCE_END_RE = re.compile(r"\.\s+|\.$")
_NON_WORD_RE = re.compile(r"[^a-z0-9\s]")
_SPACES_RE = re.compile(r"\s+")


def _clean_sentence(sentence: str) -> str:
  """Lower-case words and numbers of one sentence, single-spaced, punctuation removed."""
  return _SPACES_RE.sub(" ", _NON_WORD_RE.sub("", sentence.lower())).strip()


def clean_report(text: str, dataset: str) -> str:
  """Cleans a report the way R2Gen does before tokenising it.

  Lower-cases, removes list numbering ("1. ", " 2. "), collapses repeated dots (and, for
  MIMIC-CXR, new lines and repeated underscores), splits sentences at ". ", strips every
  character other than letters, digits and spaces, drops empty sentences, and joins the
  sentences with " . ", ending with " .".

  Args:
    text: the raw report.
    dataset: "iu_xray" or "mimic_cxr".

  Returns:
    The cleaned report, e.g. "the heart is normal . no effusion ."; "" if nothing is left.

  Example:
    >>> clean_report("1. The heart is normal.. 2. No effusion!", "iu_xray")
    'the heart is normal . no effusion .'
  """
  if dataset not in DATASETS:
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
  text = text.lower()
  if dataset == "mimic_cxr":
    text = _REPEATED_UNDERSCORES_RE.sub("_", text.replace("\n", " "))
  text = _REPEATED_DOTS_RE.sub(".", text)
  text = _NUMBERING_RE.sub(". ", text)
  sentences = [_clean_sentence(s) for s in _SENTENCE_END_RE.split(text)]
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
