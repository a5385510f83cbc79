"""Tests for report cleaning and the word-level tokenizer."""

import numpy as np
import pytest

from examples.rrg.data.tokenizer import CLEANING_RULES, Tokenizer, clean_report, transliterate

REPORTS = [
    "the heart is normal . no effusion .",
    "the heart is enlarged . no pneumothorax .",
    "no effusion . mild edema .",
]


@pytest.mark.parametrize("raw, dataset, expected", [
    ("The heart is normal. No effusion.", "iu_xray", "the heart is normal . no effusion ."),
    ("1. Heart size normal.. 2. Lungs clear!", "iu_xray", "heart size normal . lungs clear ."),
    ("1. Heart normal. 2. Lungs clear. 3. No effusion.", "iu_xray",
     "heart normal . lungs clear . no effusion ."),
    # R2Gen keeps hyphens (its character class has the range ":-[", not a hyphen).
    ("No right-sided effusion. X-ray: clear.", "iu_xray", "no right-sided effusion . x-ray clear ."),
    ("No pneumothorax (or effusion); XXXX x-ray, 2/3 of cases.", "iu_xray",
     "no pneumothorax or effusion xxxx x-ray 23 of cases ."),
    # Deleted: the range ":" to "[" (so < = > @ too), brackets, braces; kept: # $ ~ |.
    ("Size: 5 mm @ level [T4] {note}; 3 > 2 = true #1 $ ~ |ok|", "iu_xray",
     "size 5 mm level t4 note 3 2 true #1 $ ~ |ok| ."),
    ("Patient's \"tube\" 2/3 (mid) 50% +1 *", "mimic_cxr", "patients tube 23 mid 50 1 ."),
    ("FINDINGS:\nHeart size is normal.\n\n___ Lungs are   clear...", "mimic_cxr",
     "findings heart size is normal . lungs are clear ."),
    # Unicode: NFKD transliteration first, dashes become "-".
    ("C\u00f4te d\u2019Ivoire, na\u00efve \u2014 caf\u00e9.", "iu_xray",
     "cote divoire naive - cafe ."),
    ("Right\u2013sided \uff11\uff12 mm nodule.", "mimic_cxr", "right-sided 12 mm nodule ."),
    # Empty sentences are dropped (R2Gen keeps them as extra "." tokens).
    ("Normal. . Clear.", "iu_xray", "normal . clear ."),
    ("...", "mimic_cxr", ""),
    ("  \n ", "iu_xray", ""),
    ("1. ", "iu_xray", ""),
])
def test_clean_report(raw, dataset, expected):
  assert clean_report(raw, dataset) == expected


def test_newlines_split_sentences_only_for_mimic():
  # R2Gen's IU X-Ray rules do not touch new lines (its reports are single lines), so a
  # sentence end before a line break is not split; MIMIC-CXR's replace new lines by spaces.
  raw = "Heart normal.\nLungs clear."
  assert clean_report(raw, "iu_xray") == "heart normal lungs clear ."
  assert clean_report(raw, "mimic_cxr") == "heart normal . lungs clear ."
  assert CLEANING_RULES["iu_xray"] != CLEANING_RULES["mimic_cxr"]


def test_transliterate():
  assert transliterate("C\u00f4te") == "Cote"
  assert clean_report("C\u00f4te", "iu_xray") == "cote ."  # not "cte"
  assert transliterate("\u00b5g \u2212 \u00b0") == "g - "  # no ASCII form: dropped


def test_clean_report_is_idempotent():
  raw = "1. The heart is NORMAL.. 2. No focal consolidation, effusion or pneumothorax."
  for dataset in ("iu_xray", "mimic_cxr"):
    once = clean_report(raw, dataset)
    assert clean_report(once, dataset) == once


def test_clean_report_rejects_bad_input():
  with pytest.raises(ValueError, match="chexpert"):
    clean_report("x", "chexpert")
  with pytest.raises(TypeError, match="text"):
    clean_report(None, "iu_xray")


def test_build_is_sorted_and_deterministic():
  tok = Tokenizer.build(REPORTS)
  words = tok.id_to_token[4:]
  assert words == sorted(set(" ".join(REPORTS).split()))
  assert Tokenizer.build(list(reversed(REPORTS))).id_to_token == tok.id_to_token
  assert tok.vocab_size == 4 + len(words)
  assert tok.id_to_token[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]


def test_min_count_thresholds_vocabulary():
  tok = Tokenizer.build(REPORTS, min_count=2)
  # Counts: the 2, heart 2, is 2, no 3, effusion 2, . 6; the rest once.
  assert tok.id_to_token[4:] == sorted(["the", "heart", "is", "no", "effusion", "."])
  ids = tok.encode("mild edema .", max_len=6)
  np.testing.assert_array_equal(
      ids, [tok.bos_id, tok.unk_id, tok.unk_id, tok.token_to_id["."], tok.eos_id, tok.pad_id])
  with pytest.raises(ValueError, match="min_count"):
    Tokenizer.build(REPORTS, min_count=0)


def test_encode_decode_round_trip():
  tok = Tokenizer.build(REPORTS)
  for report in REPORTS:
    ids = tok.encode(report, max_len=16)
    assert ids.dtype == np.int32 and ids.shape == (16,)
    assert ids[0] == tok.bos_id
    n = len(report.split())
    assert ids[n + 1] == tok.eos_id and (ids[n + 2:] == tok.pad_id).all()
    assert tok.decode(ids) == report


def test_encode_truncates_keeping_eos():
  tok = Tokenizer.build(REPORTS)
  ids = tok.encode(REPORTS[0], max_len=4)
  np.testing.assert_array_equal(
      ids, [tok.bos_id, tok.token_to_id["the"], tok.token_to_id["heart"], tok.eos_id])
  np.testing.assert_array_equal(tok.encode("", max_len=2), [tok.bos_id, tok.eos_id])
  with pytest.raises(ValueError, match="max_len"):
    tok.encode("the", max_len=1)


def test_decode_stops_at_eos_and_skips_pad_bos():
  tok = Tokenizer.build(REPORTS)
  the, heart = tok.token_to_id["the"], tok.token_to_id["heart"]
  assert tok.decode([tok.pad_id, tok.bos_id, the, tok.pad_id, heart, tok.eos_id, the]) == (
      "the heart")
  assert tok.decode([the, tok.unk_id, 10_000]) == "the <unk> <unk>"
  assert tok.decode_batch(np.array([[the, tok.eos_id], [heart, heart]])) == [
      "the", "heart heart"]


def test_encode_batch_and_save_load(tmp_path):
  tok = Tokenizer.build(REPORTS)
  batch = tok.encode_batch(REPORTS, max_len=12)
  assert batch.shape == (3, 12) and batch.dtype == np.int32
  np.testing.assert_array_equal(batch[1], tok.encode(REPORTS[1], 12))
  assert tok.encode_batch([], max_len=12).shape == (0, 12)
  tok.save(tmp_path / "vocab.json")
  assert Tokenizer.load(tmp_path / "vocab.json").id_to_token == tok.id_to_token


def test_constructor_rejects_special_and_duplicate_words():
  with pytest.raises(ValueError, match="special"):
    Tokenizer(["<unk>", "a"])
  with pytest.raises(ValueError, match="unique"):
    Tokenizer(["a", "a"])
