"""Tests for the synthetic radiograph generator, `synthetic_dataset` and `batches`."""


import numpy as np
import pytest

from examples.rrg.data import synthetic
from examples.rrg.data.input_pipeline import Split, batches, synthetic_dataset
from examples.rrg.evaluation.labeler import (
  NEGATIVE,
  OBSERVATIONS,
  POSITIVE,
  UNCERTAIN,
  label_reports,
)

SHOWN = (POSITIVE, UNCERTAIN)


@pytest.fixture(scope="module")
def many():
  """Enough small studies to measure frequencies."""
  return synthetic.generate(3000, image_size=16, seed=7)


def test_shapes_ranges_and_determinism():
  a = synthetic.generate(20, image_size=32, seed=3)
  b = synthetic.generate(20, image_size=32, seed=3)
  c = synthetic.generate(20, image_size=32, seed=4)
  assert a.images.shape == (20, 32, 32) and a.images.dtype == np.float32
  assert a.labels.shape == (20, 14) and a.labels.dtype == np.int32
  assert 0.0 <= a.images.min() and a.images.max() <= 1.0
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, b.labels)
  assert a.reports == b.reports
  assert a.reports != c.reports and not np.array_equal(a.images, c.images)


def test_labeler_agrees_with_generator(many):
  """The rule-based labeler reads back exactly the labels the generator wrote."""
  np.testing.assert_array_equal(label_reports(many.reports), many.labels)


def test_reports_are_cleaned_and_varied(many):
  for report in many.reports[:200]:
    assert report.endswith(" .") and report == report.lower()
    assert all(c.isalnum() or c in " ." for c in report)
  assert len(set(many.reports)) > 0.8 * len(many.reports)


def test_frequencies_are_long_tailed(many):
  rate = {name: np.isin(many.labels[:, j], SHOWN).mean()
          for j, name in enumerate(OBSERVATIONS)}
  for name in ("Lung Lesion", "Pneumothorax"):  # rare but critical
    assert 0.02 <= rate[name] <= 0.08, (name, rate[name])
  assert rate["Cardiomegaly"] > 0.2 and rate["Fracture"] < 0.04
  drawn = sorted(rate[name] for name in synthetic.PREVALENCE)
  assert drawn[-1] > 8 * drawn[0]
  assert 0.15 < rate["No Finding"] < 0.6
  # Every observation is stated positive, and the common ones also negative and uncertain.
  for j, name in enumerate(OBSERVATIONS):
    assert (many.labels[:, j] == POSITIVE).any(), name
  for name in ("Cardiomegaly", "Pleural Effusion", "Consolidation", "Pneumothorax"):
    column = many.labels[:, OBSERVATIONS.index(name)]
    assert (column == NEGATIVE).any() and (column == UNCERTAIN).any(), name


def _mean_where(images, mask, present):
  """Mean intensity inside `mask` (H, W) of the images where `present` (N,)."""
  return images[present][:, mask].mean()


def test_findings_change_the_image(many):
  """Images with a finding differ where and how the finding is drawn."""
  images = many.images
  size = images.shape[-1]
  y, x = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
  column = {name: many.labels[:, OBSERVATIONS.index(name)] for name in OBSERVATIONS}
  absent = {name: ~np.isin(c, SHOWN) for name, c in column.items()}
  # Cardiomegaly: the heart's left border moves out over the left lung.
  heart_edge = (np.abs(y - 0.3) < 0.15) & (x > 0.33) & (x < 0.5)
  enlarged = column["Cardiomegaly"] == POSITIVE
  assert (_mean_where(images, heart_edge, enlarged)
          > _mean_where(images, heart_edge, absent["Cardiomegaly"]) + 0.1)
  # Effusion: fluid fills a lung base (the right, the left or both).
  bases = (y > 0.3) & (y < 0.5) & (np.abs(x) > 0.45) & (np.abs(x) < 0.6)
  effusion = column["Pleural Effusion"] == POSITIVE
  assert (_mean_where(images, bases, effusion)
          > _mean_where(images, bases, absent["Pleural Effusion"]) + 0.03)
  # Support devices are metal: the brightest pixels.
  brightest = images.reshape(len(images), -1).max(1)
  devices = column["Support Devices"] == POSITIVE
  assert brightest[devices].mean() > brightest[absent["Support Devices"]].mean() + 0.05


def test_uncertain_findings_are_reported_uncertain(many):
  j = OBSERVATIONS.index("Pneumothorax")
  for report, label in zip(many.reports, many.labels[:, j]):
    if label == UNCERTAIN:
      assert any(w in report for w in ("possible", "cannot be excluded", "questionable"))


def test_max_words_keeps_findings_and_relabels_dropped_negations():
  free = synthetic.generate(300, image_size=8, seed=5)
  short = synthetic.generate(300, image_size=8, seed=5, max_words=20)
  np.testing.assert_array_equal(free.images, short.images)
  shown = np.isin(free.labels, SHOWN)
  np.testing.assert_array_equal(short.labels[shown], free.labels[shown])
  assert (short.labels[~shown] != NEGATIVE).sum() > (free.labels[~shown] != NEGATIVE).sum()
  np.testing.assert_array_equal(label_reports(short.reports), short.labels)
  # A report still longer than max_words has had all its negations dropped.
  lengths = np.array([len(r.split()) for r in short.reports])
  has_negation = (short.labels == NEGATIVE).any(1)
  assert (lengths[has_negation] <= 20).all() and (lengths > 20).any()


def test_generate_rejects_bad_arguments():
  with pytest.raises(ValueError, match="num"):
    synthetic.generate(-1)
  with pytest.raises(ValueError, match="image_size"):
    synthetic.generate(2, image_size=4)


def test_synthetic_dataset_splits_and_tokenizer():
  splits, tokenizer = synthetic_dataset(40, 8, 12, image_size=16, max_len=40, seed=1)
  assert set(splits) == {"train", "val", "test"}
  for name, n in (("train", 40), ("val", 8), ("test", 12)):
    split = splits[name]
    assert isinstance(split, Split) and len(split) == n
    assert split.images.shape == (n, 1, 16, 16, 1) and split.images.dtype == np.float32
    assert split.tokens.shape == (n, 40) and split.tokens.dtype == np.int32
    assert split.labels.shape == (n, 14) and split.labels.dtype == np.int32
    assert len(set(split.ids)) == n
    assert (split.tokens[:, 0] == tokenizer.bos_id).all()
    assert ((split.tokens == tokenizer.eos_id).sum(1) == 1).all()
  train = splits["train"]
  for report, tokens in zip(train.reports, train.tokens):
    if len(report.split()) <= 38:
      assert tokenizer.decode(tokens) == report  # vocabulary from train: no <unk>
  # A split does not depend on the size of another one.
  again, _ = synthetic_dataset(40, 3, 12, image_size=16, max_len=40, seed=1)
  np.testing.assert_array_equal(again["test"].images, splits["test"].images)
  other, _ = synthetic_dataset(40, 8, 12, image_size=16, max_len=40, seed=2)
  assert other["train"].reports != train.reports


def _split(n):
  return Split(images=np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1, 1),
               tokens=np.arange(n, dtype=np.int32)[:, None].repeat(3, 1),
               labels=np.zeros((n, 14), np.int32), reports=[""] * n,
               ids=[str(i) for i in range(n)])


def test_batches_order_shuffle_and_drop_last():
  split = _split(10)
  ordered = list(batches(split, 4))
  assert [b["images"].shape[0] for b in ordered] == [4, 4]
  assert set(ordered[0]) == {"images", "tokens", "labels"}
  np.testing.assert_array_equal(ordered[1]["tokens"][:, 0], [4, 5, 6, 7])
  kept = list(batches(split, 4, drop_last=False))
  assert [len(b["labels"]) for b in kept] == [4, 4, 2]
  shuffled = list(batches(split, 5, np.random.default_rng(0)))
  seen = np.concatenate([b["images"].ravel() for b in shuffled])
  assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
  again = list(batches(split, 5, np.random.default_rng(0)))
  np.testing.assert_array_equal(again[0]["images"], shuffled[0]["images"])
  assert list(batches(split, 11)) == []
  with pytest.raises(ValueError, match="batch_size"):
    list(batches(split, 0))


def test_split_validates_shapes():
  good = _split(3)
  with pytest.raises(ValueError, match="same length"):
    Split(good.images, good.tokens[:2], good.labels, good.reports, good.ids)
  with pytest.raises(ValueError, match="labels"):
    Split(good.images, good.tokens, good.labels[:, :13], good.reports, good.ids)
  with pytest.raises(ValueError, match="images"):
    Split(good.images[..., 0], good.tokens, good.labels, good.reports, good.ids)
