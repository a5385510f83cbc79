"""Reader for IU X-Ray and MIMIC-CXR in the R2Gen layout (Chen et al., EMNLP 2020).

The layout is an image folder and an `annotation.json`:

    {"train": [{"id": "CXR2384_IM-0942", "report": "The heart is normal. ...",
                "image_path": ["CXR2384_IM-0942/0.png", "CXR2384_IM-0942/1.png"],
                "split": "train"}, ...],
     "val": [...], "test": [...]}

with image paths relative to the image folder. IU X-Ray studies use their two views (frontal and
lateral); MIMIC-CXR studies use their first image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

SPLITS = ("train", "val", "test")
VIEWS = {"iu_xray": 2, "mimic_cxr": 1}
_REQUIRED_KEYS = ("id", "report", "image_path")


class Record(NamedTuple):
  """One study of the annotation file."""

  id: str
  report: str
  """The raw report, before `tokenizer.clean_report`."""
  image_paths: tuple[str, ...]
  """Paths relative to the image folder."""


def _check_dataset(dataset: str) -> int:
  """Number of views of `dataset`; ValueError if unknown."""
  if dataset not in VIEWS:
    raise ValueError(f"dataset must be one of {tuple(VIEWS)}, got {dataset!r}")
  return VIEWS[dataset]


def _parse_record(entry: object, where: str, views: int) -> Record:
  """Validates one annotation entry; `where` names it in error messages."""
  if not isinstance(entry, dict):
    raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
  missing = [key for key in _REQUIRED_KEYS if key not in entry]
  if missing:
    raise ValueError(f"{where}: missing key(s) {missing}")
  if not isinstance(entry["report"], str):
    raise ValueError(f"{where}: 'report' must be a string")
  paths = entry["image_path"]
  if isinstance(paths, str):
    paths = [paths]
  if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
    raise ValueError(f"{where}: 'image_path' must be a list of strings")
  if len(paths) < views:
    raise ValueError(f"{where}: 'image_path' has {len(paths)} image(s), {views} needed")
  return Record(str(entry["id"]), entry["report"], tuple(paths[:views]))


def read_annotation(path: str | os.PathLike, dataset: str = "iu_xray") -> dict[str, list[Record]]:
  """Reads and validates an R2Gen `annotation.json`.

  Args:
    path: the annotation file.
    dataset: "iu_xray" (two views per study) or "mimic_cxr" (one view).

  Returns:
    {"train": [...], "val": [...], "test": [...]} lists of `Record`, keeping only the views
    used (the first two for IU X-Ray, the first one for MIMIC-CXR).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file is not JSON, a split is missing or empty, an entry lacks a key,
      has too few images, or an id repeats.
  """
  views = _check_dataset(dataset)
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"annotation file not found: {path}")
  with open(path, encoding="utf-8") as f:
    try:
      annotation = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(annotation, dict):
    raise ValueError(f"{path}: expected an object with keys {SPLITS}")
  records: dict[str, list[Record]] = {}
  seen: set[str] = set()
  for split in SPLITS:
    if split not in annotation:
      raise ValueError(f"{path}: missing split key {split!r}")
    entries = annotation[split]
    if not isinstance(entries, list) or not entries:
      raise ValueError(f"{path}: split {split!r} must be a non-empty list")
    records[split] = [_parse_record(entry, f"{path}: {split}[{i}]", views)
                      for i, entry in enumerate(entries)]
    for record in records[split]:
      if record.id in seen:
        raise ValueError(f"{path}: id {record.id!r} appears more than once")
      seen.add(record.id)
  return records


def load_image(path: str | os.PathLike, image_size: int) -> np.ndarray:
  """A grayscale image as float32 (image_size, image_size) in [0, 1], bilinearly resized."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"image not found: {path}")
  try:
    with Image.open(path) as image:
      gray = image.convert("L").resize((image_size, image_size),
                                       Image.Resampling.BILINEAR)
  except UnidentifiedImageError as e:
    raise ValueError(f"not a readable image: {path}") from e
  return np.asarray(gray, np.float32) / 255.0


def load_images(records: Sequence[Record], image_dir: str | os.PathLike,
                image_size: int) -> np.ndarray:
  """Images of the records as float32 (N, V, image_size, image_size, 1) in [0, 1].

  All records must have the same number of views V.
  """
  image_dir = os.fspath(image_dir)
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(f"image folder not found: {image_dir}")
  views = {len(r.image_paths) for r in records}
  if len(views) > 1:
    raise ValueError(f"records have different numbers of views: {sorted(views)}")
  n_views = views.pop() if views else 0
  images = np.zeros((len(records), n_views, image_size, image_size, 1), np.float32)
  for i, record in enumerate(records):
    for v, relative in enumerate(record.image_paths):
      images[i, v, :, :, 0] = load_image(os.path.join(image_dir, relative), image_size)
  return images
