"""Tests for the R2Gen-layout reader and `load_r2gen`, on small datasets written here."""

import json

import numpy as np
import pytest

from examples.rrg.data import r2gen
from examples.rrg.data.input_pipeline import load_r2gen
from examples.rrg.evaluation.labeler import OBSERVATIONS, POSITIVE, label_report, label_reports

Image = pytest.importorskip("PIL.Image")

REPORTS = {
    "train": ["1. The heart is enlarged. 2. No pleural effusion.",
              "The heart is normal. No pneumothorax.",
              "The heart is normal. Small left pleural effusion."],
    "val": ["Mild cardiomegaly. Lungs are clear."],
    "test": ["No acute cardiopulmonary process.", "Possible right pneumothorax."],
}


def _close(a, b, rtol=1e-6):
  """float32 results compared relative to the norm of the expected array."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return a.shape == b.shape and np.linalg.norm(a - b) <= rtol * np.linalg.norm(b)


def _save(pixels, path, **kwargs):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, **kwargs)


def _write_image(path, kind, level, size=(20, 16)):
  """A constant image of grey `level` in [0, 1] of the given kind; returns the level read
  back exactly (the 8- or 16-bit quantised value)."""
  h, w = size[::-1]
  if kind == "L":
    value = round(level * 255)
    _save(np.full((h, w), value, np.uint8), path)
    return value / 255
  if kind == "I;16":
    value = round(level * 65535)
    _save(np.full((h, w), value, np.uint16), path)
    return value / 65535
  if kind == "RGB":  # equal channels: luma is the channel value
    value = round(level * 255)
    _save(np.full((h, w, 3), value, np.uint8), path)
    return value / 255
  if kind == "P":  # palette index 1 -> (value, value, value)
    value = round(level * 255)
    indices = np.ones((h, w), np.uint8)
    image = Image.frombytes("P", (w, h), indices.tobytes())
    image.putpalette([0, 0, 0, value, value, value] + [0] * (3 * 254))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return value / 255
  if kind in ("JPEG-L", "JPEG-RGB"):
    value = round(level * 255)
    shape = (h, w) if kind == "JPEG-L" else (h, w, 3)
    _save(np.full(shape, value, np.uint8), path, quality=95)
    return value / 255
  raise ValueError(kind)


# ------------------------------------------------------------------------------------------------
# Images: each format scaled by its own bit depth
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, name", [
    ("L", "a.png"), ("I;16", "a.png"), ("RGB", "a.png"), ("P", "a.png"),
    ("JPEG-L", "a.jpg"), ("JPEG-RGB", "a.jpeg")])
def test_load_image_scales_by_bit_depth(tmp_path, kind, name):
  path = tmp_path / kind.replace(";", "") / name
  expected = _write_image(path, kind, 0.3)
  with Image.open(path) as image:
    assert image.mode == {"JPEG-L": "L", "JPEG-RGB": "RGB"}.get(kind, kind)
  pixels = r2gen.load_image(path, 8)
  assert pixels.shape == (8, 8) and pixels.dtype == np.float32
  rtol = 1e-6 if not kind.startswith("JPEG") else 2 / 255 / 0.3  # JPEG: +-1 grey level
  assert _close(pixels, np.full((8, 8), expected), rtol=rtol)


def test_sixteen_bit_png_is_not_clipped_to_white(tmp_path):
  # A full-range 16-bit ramp (what DICOM-to-PNG converters write), and 12-bit data stored in
  # 16 bits: both must keep their grey levels, not saturate as an 8-bit conversion would.
  ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
  _save(ramp, tmp_path / "ramp.png")
  pixels = r2gen.load_image(tmp_path / "ramp.png", 64)
  assert _close(pixels, ramp / 65535.0)
  assert np.mean(pixels == 1.0) < 0.01 and abs(pixels.mean() - 0.5) < 0.01
  twelve_bit = (ramp >> 4).astype(np.uint16)  # 0..4095
  _save(twelve_bit, tmp_path / "12bit.png")
  pixels = r2gen.load_image(tmp_path / "12bit.png", 32)
  assert pixels.max() <= 4095 / 65535 + 1e-6 and pixels.max() > 0.05


def test_resize_keeps_sixteen_bit_precision(tmp_path):
  # Two 16-bit levels one 8-bit step apart: after resizing they must still differ by 1/65535
  # steps, not collapse to the same 8-bit value.
  pixels = np.full((16, 16), 30000, np.uint16)
  pixels[:, 8:] = 30100
  _save(pixels, tmp_path / "two.png")
  out = r2gen.load_image(tmp_path / "two.png", 4)
  assert _close(out[:, 0], np.full(4, 30000 / 65535)) and _close(out[:, -1], np.full(4, 30100 / 65535))


def test_large_jpeg_decoded_at_reduced_scale_matches_full_decode(tmp_path):
  y, x = np.mgrid[0:480, 0:400]
  pixels = (127 + 100 * np.sin(x / 37.0) * np.cos(y / 53.0)).astype(np.uint8)
  _save(pixels, tmp_path / "big.jpg", quality=95)
  out = r2gen.load_image(tmp_path / "big.jpg", 32)  # decoded at 1/8 scale: 60 x 50
  with Image.open(tmp_path / "big.jpg") as image:
    full = np.asarray(image, np.float32) / 255
  reference = np.asarray(Image.fromarray(full).resize((32, 32), Image.Resampling.BILINEAR))
  assert out.shape == (32, 32) and _close(out, reference, rtol=0.02)


def test_corrupt_and_missing_images_name_study_and_path(tmp_path):
  good = tmp_path / "good.png"
  _save((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64), good)
  truncated = tmp_path / "truncated.png"
  truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
  garbage = tmp_path / "garbage.jpg"
  garbage.write_bytes(b"\xff\xd8 not really a jpeg")
  for path in (truncated, garbage):
    with pytest.raises(ValueError, match=rf"study 'CXR9'.*{path.name}"):
      r2gen.load_image(path, 8, study="CXR9")
  with pytest.raises(FileNotFoundError, match=r"study 'CXR9'.*nothing\.png"):
    r2gen.load_image(tmp_path / "nothing.png", 8, study="CXR9")


# ------------------------------------------------------------------------------------------------
# R2Gen layouts
# ------------------------------------------------------------------------------------------------
def _write_dataset(root, views=2, reports=None, kinds=("L", "L")):
  """Writes annotation.json and images in the IU X-Ray layout; returns (ann_path, image_dir).

  View v of study i has grey level (40 * v + i) / 255 (quantised to the file's bit depth).
  """
  reports = reports or REPORTS
  image_dir = root / "images"
  annotation = {}
  for split, texts in reports.items():
    annotation[split] = []
    for i, text in enumerate(texts):
      study = f"CXR{split}{i}_IM-{i:04d}"
      paths = [f"{study}/{v}.png" for v in range(views)]
      for v, relative in enumerate(paths):
        _write_image(image_dir / relative, kinds[v % len(kinds)], (40 * v + i) / 255)
      annotation[split].append(
          {"id": study, "report": text, "image_path": paths, "split": split})
  ann_path = root / "annotation.json"
  ann_path.write_text(json.dumps(annotation))
  return ann_path, image_dir


def test_load_r2gen_iu_xray_two_views_sixteen_bit_and_rgb(tmp_path):
  ann_path, image_dir = _write_dataset(tmp_path, kinds=("I;16", "RGB"))
  splits, tokenizer = load_r2gen(ann_path, image_dir, image_size=8, max_len=12, min_count=2)
  assert {k: len(v) for k, v in splits.items()} == {"train": 3, "val": 1, "test": 2}
  train = splits["train"]
  assert train.images.shape == (3, 2, 8, 8, 1) and train.images.dtype == np.float32
  assert train.ids == ["CXRtrain0_IM-0000", "CXRtrain1_IM-0001", "CXRtrain2_IM-0002"]
  # Views in order: view 0 is 16-bit (level 2/255 at 16 bits), view 1 RGB (42/255).
  assert _close(train.images[2, 0], np.full((8, 8, 1), round(2 / 255 * 65535) / 65535))
  assert _close(train.images[2, 1], np.full((8, 8, 1), 42 / 255))
  assert _close(train.images[1:3][:, 1], np.stack([train.images[1, 1], train.images[2, 1]]))
  # Vocabulary from train only, words seen twice or more; references are the decoded tokens.
  assert sorted(tokenizer.id_to_token[4:]) == [
      ".", "effusion", "heart", "is", "no", "normal", "pleural", "the"]
  assert train.reports[0] == "the heart is <unk> . no pleural effusion ."
  assert splits["val"].reports[0] == "<unk> <unk> . <unk> <unk> <unk> ."
  assert splits["test"].tokens.shape == (2, 12)
  for split in splits.values():
    assert split.reports == tokenizer.decode_batch(split.tokens)
    np.testing.assert_array_equal(split.labels,
                                  np.stack([label_report(r) for r in split.reports]))


def test_mimic_nested_jpeg_layout(tmp_path):
  image_dir = tmp_path / "files"
  annotation = {}
  for s, split in enumerate(("train", "val", "test")):
    annotation[split] = []
    for i in range(2):
      subject = f"p1{s}/p1{s}00000{i}"
      study = f"s5{s}00000{i}"
      relative = f"{subject}/{study}/0c4eb1e1-b801e2ff-{s}{i}.jpg"
      _write_image(image_dir / relative, "JPEG-L" if i else "JPEG-RGB", (100 + 10 * i) / 255)
      annotation[split].append({"id": f"dicom{s}{i}", "study_id": study, "subject_id": subject,
                                "report": "FINDINGS:\nNo focal consolidation.\n\nIMPRESSION: "
                                          f"No acute process {i}.", "image_path": [relative],
                                "split": split})
  ann_path = tmp_path / "annotation.json"
  ann_path.write_text(json.dumps(annotation))
  splits, _ = load_r2gen(ann_path, image_dir, dataset="mimic_cxr", image_size=16, min_count=1)
  test = splits["test"]
  assert test.images.shape == (2, 1, 16, 16, 1)
  assert _close(test.images[1], np.full((1, 16, 16, 1), 110 / 255), rtol=2 / 110)
  assert test.reports[0] == "findings no focal consolidation . impression no acute process 0 ."
  assert test.tokens.shape == (2, r2gen.DATASET_DEFAULTS["mimic_cxr"].max_len)


def test_mimic_uses_first_view(tmp_path):
  ann_path, image_dir = _write_dataset(tmp_path, views=2)
  splits, _ = load_r2gen(ann_path, image_dir, dataset="mimic_cxr", image_size=4, min_count=1)
  assert splits["train"].images.shape == (3, 1, 4, 4, 1)
  assert _close(splits["train"].images[1], np.full((1, 4, 4, 1), 1 / 255))


def test_dataset_defaults(tmp_path):
  assert r2gen.DATASET_DEFAULTS["iu_xray"] == (2, 60, 3)
  assert r2gen.DATASET_DEFAULTS["mimic_cxr"] == (1, 100, 10)
  # "heart" 3 times, "effusion" twice in train: IU's threshold 3 keeps "heart" only, MIMIC's
  # 10 keeps neither.
  reports = {"train": ["Heart ok. Effusion.", "Heart ok. Effusion.", "Heart big."],
             "val": ["Heart ok."], "test": ["Heart ok."]}
  ann_path, image_dir = _write_dataset(tmp_path, reports=reports)
  iu, iu_tok = load_r2gen(ann_path, image_dir, dataset="iu_xray", image_size=4)
  mimic, mimic_tok = load_r2gen(ann_path, image_dir, dataset="mimic_cxr", image_size=4)
  assert iu["train"].tokens.shape[1] == 60 and mimic["train"].tokens.shape[1] == 100
  assert "heart" in iu_tok.token_to_id and "effusion" not in iu_tok.token_to_id
  assert "heart" not in mimic_tok.token_to_id


def test_labels_come_from_the_truncated_report(tmp_path):
  long_report = ("The heart is normal. " * 10) + "There is a large right pneumothorax."
  reports = {"train": [long_report], "val": [long_report], "test": [long_report]}
  ann_path, image_dir = _write_dataset(tmp_path, reports=reports)
  pneumothorax = OBSERVATIONS.index("Pneumothorax")
  short, _ = load_r2gen(ann_path, image_dir, image_size=4, max_len=20, min_count=1)
  full, _ = load_r2gen(ann_path, image_dir, image_size=4, max_len=80, min_count=1)
  # 18 words fit in 20 tokens: the pneumothorax sentence is cut, and so is its label.
  assert "pneumothorax" not in short["test"].reports[0]
  assert short["test"].labels[0, pneumothorax] != POSITIVE
  assert full["test"].reports[0].endswith("there is a large right pneumothorax .")
  assert full["test"].labels[0, pneumothorax] == POSITIVE


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
  # CE never mixes labelers: the generated reports are labelled by the rule-based labeler, so
  # the references it scores against are the rule-based labels of the same reference text.
  for split in splits.values():
    np.testing.assert_array_equal(split.reference_labels, label_reports(split.reports))
    assert not np.array_equal(split.reference_labels, split.labels)
  plain, _ = load_r2gen(ann_path, image_dir, image_size=4)
  assert plain["test"].ce_labels is None
  np.testing.assert_array_equal(plain["test"].reference_labels, plain["test"].labels)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
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
    ({"train": [_entry()], "val": [_entry(1)], "test": [_entry(2, report="")]},
     r"test\[0\]: study 's2' has an empty report"),
    ({"train": [_entry(), _entry(7, report=" \n\t ")], "val": [_entry(1)], "test": [_entry(2)]},
     r"train\[1\]: study 's7' has an empty report"),
])
def test_read_annotation_errors(tmp_path, content, message):
  path = _annotation(tmp_path, content)
  with pytest.raises(ValueError, match=message) as error:
    r2gen.read_annotation(path)
  assert str(path) in str(error.value)


def test_report_with_no_words_is_an_error(tmp_path):
  reports = {**REPORTS, "val": ["... !!! ..."]}
  ann_path, image_dir = _write_dataset(tmp_path, reports=reports)
  with pytest.raises(ValueError, match=r"study 'CXRval0_IM-0000' \(val\) has no word left"):
    load_r2gen(ann_path, image_dir, image_size=4)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing.json"):
    load_r2gen(tmp_path / "nothing.json", tmp_path)
  ann_path, image_dir = _write_dataset(tmp_path)
  with pytest.raises(FileNotFoundError, match="no_images"):
    load_r2gen(ann_path, tmp_path / "no_images")
  (image_dir / "CXRtest1_IM-0001" / "1.png").unlink()
  # Checked up front by default ...
  with pytest.raises(FileNotFoundError,
                     match=r"1 image\(s\) not found: study 'CXRtest1_IM-0001': .*1\.png"):
    load_r2gen(ann_path, image_dir, image_size=4)
  # ... otherwise when the image is read.
  splits, _ = load_r2gen(ann_path, image_dir, image_size=4, check_files=False)
  splits["test"].images[0]
  with pytest.raises(FileNotFoundError, match=r"study 'CXRtest1_IM-0001'.*CXRtest1_IM-0001.1\.png"):
    splits["test"].images[1]
  with pytest.raises(FileNotFoundError, match=r"study 'CXRtest1_IM-0001'"):
    splits["test"].images[0:2]  # read by threads: the error still comes through


def test_unreadable_image_and_unknown_dataset(tmp_path):
  ann_path, image_dir = _write_dataset(tmp_path)
  (image_dir / "CXRval0_IM-0000" / "0.png").write_bytes(b"not a png")
  splits, _ = load_r2gen(ann_path, image_dir, image_size=4)
  with pytest.raises(ValueError, match=r"study 'CXRval0_IM-0000': not a readable image: .*0\.png"):
    splits["val"].images[0]
  with pytest.raises(ValueError, match="chexpert"):
    load_r2gen(ann_path, image_dir, dataset="chexpert")


def test_image_files_indexing(tmp_path):
  ann_path, image_dir = _write_dataset(tmp_path)
  records = r2gen.read_annotation(ann_path)["train"]
  files = r2gen.ImageFiles(records, image_dir, 4, threads=3)
  assert len(files) == 3 and files.shape == (3, 2, 4, 4, 1) and files.ndim == 5
  every = files[:]
  assert every.shape == (3, 2, 4, 4, 1)
  serial = r2gen.ImageFiles(records, image_dir, 4, threads=1)
  np.testing.assert_array_equal(serial[:], every)  # threads read the same studies in order
  assert _close(every[:, 1, 0, 0, 0], (40 + np.arange(3)) / 255)
  assert _close(files[-1], every[2]) and _close(files[[2, 0]], every[[2, 0]])
  assert _close(files[np.array([False, True, True])], every[1:])
  assert _close(files[1, 1], every[1, 1]) and _close(files[0:2, 1], every[0:2, 1])
  assert files[2:2].shape == (0, 2, 4, 4, 1)
  with pytest.raises(IndexError, match="out of range"):
    files[3]
  with pytest.raises(IndexError, match="out of range"):
    files[[0, -4]]
  with pytest.raises(TypeError, match="integers"):
    files[np.array([0.5])]


def test_mimic_accepts_single_image_path(tmp_path):
  path = _annotation(tmp_path, {
      split: [_entry(i, image_path=f"{split}/0.png")]
      for i, split in enumerate(("train", "val", "test"))})
  records = r2gen.read_annotation(path, "mimic_cxr")
  assert records["val"][0].image_paths == ("val/0.png",)
  with pytest.raises(ValueError, match="2 needed"):
    r2gen.read_annotation(path, "iu_xray")
