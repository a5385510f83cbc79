"""The R2Gen-layout writer: what it writes is what the loader reads back."""

import re

import numpy as np
import pytest

from examples.rrg.data import synthetic, write_layout
from examples.rrg.data.input_pipeline import load_r2gen

pytest.importorskip("PIL")

SIZES = {"train": 6, "val": 2, "test": 2}


@pytest.mark.parametrize("dataset", ["iu_xray", "mimic_cxr"])
def test_written_layout_loads_with_the_generators_images_and_reports(tmp_path, dataset):
  ann = write_layout.write(tmp_path, dataset, sizes=SIZES, image_size=16, seed=3)
  splits, _ = load_r2gen(ann, tmp_path / "images", dataset=dataset, image_size=16, min_count=1,
                         max_len=100)
  assert {k: len(v) for k, v in splits.items()} == SIZES
  # The same generator stream, split by split, gives the studies that were written.
  rng = np.random.default_rng(3)
  for name in ("train", "val", "test"):
    studies = synthetic.generate(SIZES[name], image_size=16, seed=rng)
    for i in range(SIZES[name]):
      write_layout._paths(dataset, name, i, rng)  # the writer draws the paths from rng too
    split = splits[name]
    if name == "train":  # (val and test words outside the vocabulary read back as <unk>)
      # R2Gen's cleaning of the written report gives back the generator's text.
      assert split.reports == list(studies.reports)
    frontal = np.asarray(split.images[:, 0, :, :, 0])
    # 16-bit PNG (IU view 0) to within 1/65535, JPEG (MIMIC) to within JPEG's loss.
    tol = 1e-4 if dataset == "iu_xray" else 0.1
    assert np.abs(frontal - studies.images).mean() < tol / 4
    assert np.abs(frontal - studies.images).max() < max(tol, 0.35)
    if dataset == "iu_xray":  # view 1: the same image mirrored, 8-bit RGB
      lateral = np.asarray(split.images[:, 1, :, :, 0])
      assert np.abs(lateral - studies.images[:, :, ::-1]).max() <= 0.5 / 255 + 1e-6
      assert all(re.fullmatch(r"CXR\w+_IM-\d{4}", s) for s in split.ids)
    else:
      assert all(re.fullmatch(r"s5\d{7}", s) for s in split.ids)
  paths = sorted(p.relative_to(tmp_path / "images").as_posix()
                 for p in (tmp_path / "images").rglob("*.*"))
  if dataset == "mimic_cxr":
    assert all(re.fullmatch(r"p1\d/p1\d{7}/s5\d{7}/[0-9a-f-]{36}\.jpg", p) for p in paths)
  else:
    assert len(paths) == 2 * sum(SIZES.values())


def test_bad_dataset_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="dataset"):
    write_layout.write(tmp_path, "chexpert")
