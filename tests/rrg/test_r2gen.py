"""Tests for the R2Gen-layout reader and `load_r2gen`, on a tiny dataset written here."""

import json

import numpy as np
import pytest

from examples.rrg import r2gen
from examples.rrg.input_pipeline import load_r2gen
from examples.rrg.labeler import OBSERVATIONS, POSITIVE, label_report

Image = pytest.importorskip("PIL.Image")

REPORTS = {
    "train": ["1. The heart is enlarged. 2. No pleural effusion.",
              "The heart is normal. No pneumothorax.",
              "The heart is normal. Small left pleural effusion."],
    "val": ["Mild cardiomegaly. Lungs are clear."],
    "test": ["No acute cardiopulmonary process.", "Possible right pneumothorax."],
}


def _write_png(path, value, size=(20, 16)):
  """A constant-gray PNG, with one bright pixel so that views differ from each other."""
  pixels = np.full(size[::-1], value, np.uint8)
  pixels[0, 0] = 255
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels, mode="L").save(path)


def _write_dataset(root, views=2, reports=None):
  """Writes annotation.json and images in the R2Gen layout; returns (ann_path, image_dir)."""
  reports = reports or REPORTS
  image_dir = root / "images"
  annotation = {}
  for split, texts in reports.items():
    annotation[split] = []
    for i, text in enumerate(texts):
      study = f"CXR{split}{i}_IM-{i:04d}"
      paths = [f"{study}/{v}.png" for v in range(views)]
      for v, relative in enumerate(paths):
        _write_png(image_dir / relative, value=40 * v + i)
      annotation[split].append(
          {"id": study, "report": text, "image_path": paths, "split": split})
  ann_path = root / "annotation.json"
  ann_path.write_text(json.dumps(annotation))
  return ann_path, image_dir


def test_load_r2gen_iu_xray(tmp_path):
  ann_path, image_dir = _write_dataset(tmp_path)
  splits, tokenizer = load_r2gen(ann_path, image_dir, image_size=8, max_len=12, min_count=2)
  assert {k: len(v) for k, v in splits.items()} == {"train": 3, "val": 1, "test": 2}
  train = splits["train"]
  assert train.images.shape == (3, 2, 8, 8, 1) and train.images.dtype == np.float32
  assert train.ids == ["CXRtrain0_IM-0000", "CXRtrain1_IM-0001", "CXRtrain2_IM-0002"]
  # Views in order, gray levels read back (value 40 * view + index, out of 255).
  np.testing.assert_allclose(np.median(train.images[2, 1]), (40 + 2) / 255, atol=1e-6)
  np.testing.assert_allclose(np.median(train.images[2, 0]), 2 / 255, atol=1e-6)
  # Reports cleaned; vocabulary from train only, words seen twice or more.
  assert train.reports[0] == "the heart is enlarged . no pleural effusion ."
  assert sorted(tokenizer.id_to_token[4:]) == [
      ".", "effusion", "heart", "is", "no", "normal", "pleural", "the"]
  assert tokenizer.decode(splits["val"].tokens[0]) == "<unk> <unk> . <unk> <unk> <unk> ."
  assert splits["test"].tokens.shape == (2, 12)
  # Labels from the rule-based labeler on the cleaned reports.
  for split in splits.values():
    np.testing.assert_array_equal(split.labels,
                                  np.stack([label_report(r) for r in split.reports]))
  assert splits["val"].labels[0, OBSERVATIONS.index("Cardiomegaly")] == POSITIVE


def test_load_r2gen_mimic_uses_first_view(tmp_path):
  ann_path, image_dir = _write_dataset(tmp_path, views=2)
  splits, _ = load_r2gen(ann_path, image_dir, dataset="mimic_cxr", image_size=4, min_count=1)
  assert splits["train"].images.shape == (3, 1, 4, 4, 1)
  np.testing.assert_allclose(np.median(splits["train"].images[1]), 1 / 255, atol=1e-6)


def test_load_r2gen_with_external_labels(tmp_path):
  ann_path, image_dir = _write_dataset(tmp_path)
  records = r2gen.read_annotation(ann_path)
  rows = ["id," + ",".join(OBSERVATIONS)]
  for split_records in records.values():
    rows += [f"{r.id}," + ",".join(["1"] + [""] * 13) for r in split_records]
  labels_path = tmp_path / "chexbert.csv"
  labels_path.write_text("\n".join(rows) + "\n")
  splits, _ = load_r2gen(ann_path, image_dir, image_size=4, labels_path=labels_path)
  assert (splits["test"].labels[:, 0] == POSITIVE).all()
  assert (splits["test"].labels[:, 1:] == 0).all()


def _annotation(tmp_path, content):
  path = tmp_path / "annotation.json"
  path.write_text(content if isinstance(content, str) else json.dumps(content))
  return path


def _entry(i=0, **overrides):
  entry = {"id": f"s{i}", "report": "No effusion.", "image_path": ["a/0.png", "a/1.png"]}
  entry.update(overrides)
  return entry


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ([1, 2], "expected an object"),
    ({"train": [_entry()], "val": [_entry(1)]}, "'test'"),
    ({"train": [_entry()], "val": [], "test": [_entry(2)]}, "'val' must be a non-empty list"),
    ({"train": [{"id": "s0", "report": "x"}], "val": [_entry(1)], "test": [_entry(2)]},
     r"train\[0\]: missing key\(s\) \['image_path'\]"),
    ({"train": [_entry()], "val": [_entry(1, image_path=["a/0.png"])], "test": [_entry(2)]},
     r"val\[0\]: 'image_path' has 1 image\(s\), 2 needed"),
    ({"train": [_entry()], "val": [_entry(1, report=3)], "test": [_entry(2)]}, "'report'"),
    ({"train": [_entry()], "val": [_entry(0)], "test": [_entry(2)]}, "'s0' appears more"),
])
def test_read_annotation_errors(tmp_path, content, message):
  path = _annotation(tmp_path, content)
  with pytest.raises(ValueError, match=message) as error:
    r2gen.read_annotation(path)
  assert str(path) in str(error.value)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing.json"):
    load_r2gen(tmp_path / "nothing.json", tmp_path)
  ann_path, image_dir = _write_dataset(tmp_path)
  with pytest.raises(FileNotFoundError, match="no_images"):
    load_r2gen(ann_path, tmp_path / "no_images")
  (image_dir / "CXRtest1_IM-0001" / "1.png").unlink()
  with pytest.raises(FileNotFoundError, match=r"CXRtest1_IM-0001.1\.png"):
    load_r2gen(ann_path, image_dir, image_size=4)


def test_unreadable_image_and_unknown_dataset(tmp_path):
  ann_path, image_dir = _write_dataset(tmp_path)
  (image_dir / "CXRval0_IM-0000" / "0.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match="CXRval0_IM-0000"):
    load_r2gen(ann_path, image_dir, image_size=4)
  with pytest.raises(ValueError, match="chexpert"):
    load_r2gen(ann_path, image_dir, dataset="chexpert")


def test_mimic_accepts_single_image_path(tmp_path):
  path = _annotation(tmp_path, {
      split: [_entry(i, image_path=f"{split}/0.png")]
      for i, split in enumerate(("train", "val", "test"))})
  records = r2gen.read_annotation(path, "mimic_cxr")
  assert records["val"][0].image_paths == ("val/0.png",)
  with pytest.raises(ValueError, match="2 needed"):
    r2gen.read_annotation(path, "iu_xray")
