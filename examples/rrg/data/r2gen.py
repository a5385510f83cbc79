"""Reader for IU X-Ray and MIMIC-CXR in the R2Gen layout (Chen et al., EMNLP 2020).

The layout is an image folder and an `annotation.json`:

    {"train": [{"id": "CXR2384_IM-0942", "report": "The heart is normal. ...",
                "image_path": ["CXR2384_IM-0942/0.png", "CXR2384_IM-0942/1.png"],
                "split": "train"}, ...],
     "val": [...], "test": [...]}

with image paths relative to the image folder (MIMIC-CXR's are nested,
``p10/p10000032/s50414267/02aa804e-....jpg``). IU X-Ray studies use their two views (frontal and
lateral); MIMIC-CXR studies use their first image. `DATASET_DEFAULTS` holds R2Gen's settings per
dataset.

Images are read when indexed (`ImageFiles`), never all at once: 8- and 16-bit greyscale, RGB and
palette PNGs and JPEGs, each scaled to [0, 1] by its own bit depth.
"""

from __future__ import annotations

import concurrent.futures
import json
import operator
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

SPLITS = ("train", "val", "test")
_REQUIRED_KEYS = ("id", "report", "image_path")


class DatasetDefaults(NamedTuple):
  """R2Gen's settings for one dataset (its ``train_iu_xray.sh`` / ``train_mimic_cxr.sh``)."""

  views: int
  """Images per study."""
  max_len: int
  """Token length (R2Gen's ``max_seq_length``)."""
  min_count: int
  """Vocabulary frequency threshold (R2Gen's ``threshold``)."""


DATASET_DEFAULTS: dict[str, DatasetDefaults] = {
    "iu_xray": DatasetDefaults(views=2, max_len=60, min_count=3),
    "mimic_cxr": DatasetDefaults(views=1, max_len=100, min_count=10),
}
VIEWS = {name: d.views for name, d in DATASET_DEFAULTS.items()}


class Record(NamedTuple):
  """One study of the annotation file."""

  id: str
  report: str
  """The raw report, before `tokenizer.clean_report`."""
  image_paths: tuple[str, ...]
  """Paths relative to the image folder."""


def _check_dataset(dataset: str) -> int:
  """Number of views of `dataset`; ValueError if unknown."""
  if dataset not in DATASET_DEFAULTS:
    raise ValueError(f"dataset must be one of {tuple(DATASET_DEFAULTS)}, got {dataset!r}")
  return DATASET_DEFAULTS[dataset].views


def _parse_record(entry: object, where: str, views: int) -> Record:
  """Validates one annotation entry; `where` names it in error messages."""
  if not isinstance(entry, dict):
    raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
  missing = [key for key in _REQUIRED_KEYS if key not in entry]
  if missing:
    raise ValueError(f"{where}: missing key(s) {missing}")
  if not isinstance(entry["report"], str):
    raise ValueError(f"{where}: 'report' must be a string")
  if not entry["report"].strip():
    raise ValueError(f"{where}: study {entry['id']!r} has an empty report")
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
      has an empty or whitespace-only report or too few images, or an id repeats.
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


# Pillow modes read as integers of a known bit depth; any other mode is converted to 8-bit "L".
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError)  # what Pillow raises on a damaged file


def _grey_pixels(image) -> np.ndarray:
  """The pixels of a Pillow image as float32 grey levels in [0, 1], scaled by its bit depth."""
  if image.mode in _SIXTEEN_BIT_MODES:
    return np.asarray(image).astype(np.float32) / 65535.0
  if image.mode == "I":  # 32-bit integers: 16-bit data from some readers
    pixels = np.asarray(image)
    if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
      raise ValueError(f"32-bit integer pixels outside [0, 65535] "
                       f"(range {pixels.min()}..{pixels.max()})")
    return pixels.astype(np.float32) / 65535.0
  if image.mode == "F":
    raise ValueError("floating-point images (mode 'F') have no bit depth to scale by")
  if image.mode != "L":  # "1", "P", "LA", "RGB", "RGBA", "CMYK", ...: 8 bits per channel
    image = image.convert("L")
  return np.asarray(image).astype(np.float32) / 255.0


def load_image(path: str | os.PathLike, image_size: int, *, study: str | None = None) -> np.ndarray:
  """A greyscale image as float32 (image_size, image_size) in [0, 1], bilinearly resized.

  8-bit files (greyscale, RGB, palette; PNG or JPEG) are divided by 255, 16-bit greyscale
  ("I;16") by 65535; colour is converted to luma. Resizing is done on the float values, so
  16-bit precision is kept. JPEGs are decoded directly at a reduced scale (libjpeg's 1/2,
  1/4, 1/8) no smaller than `image_size`, which makes full-size MIMIC-CXR files cheap to read.

  Args:
    path: the image file.
    image_size: height and width of the result.
    study: the study id, named in error messages.

  Raises:
    FileNotFoundError: `path` does not exist (the message names `study` and `path`).
    ValueError: the file is not a readable image, or has floating-point pixels.
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel

  path = os.fspath(path)
  where = f"study {study!r}: " if study is not None else ""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{where}image not found: {path}")
  try:
    with Image.open(path) as image:
      if image.format == "JPEG":  # decode at the smallest 1/2^k scale still >= image_size
        image.draft(image.mode, (image_size, image_size))
      image.load()
      pixels = _grey_pixels(image)
  except _IMAGE_ERRORS as e:
    raise ValueError(f"{where}not a readable image: {path} ({e})") from e
  resized = Image.fromarray(pixels).resize((image_size, image_size), Image.Resampling.BILINEAR)
  return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)


class ImageFiles:
  """The images of some studies, read from disk when indexed.

  Behaves like a read-only float32 array of shape (N, V, image_size, image_size, 1) in [0, 1]
  for the indexing the training code does: ``files[i]`` (one study, (V, S, S, 1)),
  ``files[a:b]``, ``files[[i, j]]`` and ``files[i, v]``. Nothing is cached, so memory does
  not grow with N.

  Example:
    >>> files = ImageFiles(records["train"], "data/iu_xray/images", 64)  # doctest: +SKIP
    >>> files.shape, files[:4].shape                                     # doctest: +SKIP
    ((2069, 2, 64, 64, 1), (4, 2, 64, 64, 1))
  """

  dtype = np.dtype(np.float32)
  ndim = 5

  def __init__(self, records: Sequence[Record], image_dir: str | os.PathLike, image_size: int,
               *, check_files: bool = True, threads: int | None = None):
    """Indexes the images of `records`, relative to `image_dir`.

    Args:
      records: studies, all with the same number of views.
      image_dir: the folder the records' image paths are relative to.
      image_size: height and width of the images returned.
      check_files: check now that every file exists (one `stat` per image), so that a
        missing file fails before training rather than when it is first read.
      threads: threads that read the studies of one multi-study index (``files[a:b]``) in
        parallel (Pillow decodes without the GIL); None: up to 8, one per CPU core.

    Raises:
      FileNotFoundError: `image_dir` or (with `check_files`) an image is missing; the message
        names the study and the path.
      ValueError: the records have different numbers of views, or `image_size` < 1.
    """
    image_dir = os.fspath(image_dir)
    if not os.path.isdir(image_dir):
      raise FileNotFoundError(f"image folder not found: {image_dir}")
    if image_size < 1:
      raise ValueError(f"image_size must be >= 1, got {image_size}")
    views = {len(r.image_paths) for r in records}
    if len(views) > 1:
      raise ValueError(f"records have different numbers of views: {sorted(views)}")
    self.image_dir = image_dir
    self.image_size = int(image_size)
    self.threads = min(8, os.cpu_count() or 1) if threads is None else max(int(threads), 1)
    self.ids = tuple(r.id for r in records)
    self.relative_paths = tuple(r.image_paths for r in records)
    self.shape = (len(records), views.pop() if views else 0, self.image_size, self.image_size, 1)
    if check_files:
      self._check_files()

  def _check_files(self) -> None:
    missing = [(study, os.path.join(self.image_dir, p))
               for study, paths in zip(self.ids, self.relative_paths) for p in paths
               if not os.path.isfile(os.path.join(self.image_dir, p))]
    if missing:
      listed = "; ".join(f"study {s!r}: {p}" for s, p in missing[:5])
      more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
      raise FileNotFoundError(f"{len(missing)} image(s) not found: {listed}{more}")

  def __len__(self) -> int:
    return self.shape[0]

  def __repr__(self) -> str:
    return (f"ImageFiles({len(self)} studies x {self.shape[1]} views, "
            f"{self.image_size} px, under {self.image_dir!r})")

  def study(self, index: int) -> np.ndarray:
    """The views of study `index`: float32 (V, S, S, 1)."""
    out = np.empty(self.shape[1:], np.float32)
    for v, relative in enumerate(self.relative_paths[index]):
      out[v, :, :, 0] = load_image(os.path.join(self.image_dir, relative), self.image_size,
                                   study=self.ids[index])
    return out

  def __getitem__(self, key) -> np.ndarray:
    if isinstance(key, tuple):  # (studies, views, ...)
      if not key:
        raise TypeError("ImageFiles needs an index for the study axis")
      head, rest = key[0], key[1:]
      one_study = not isinstance(head, slice) and np.ndim(head) == 0
      return self[head][rest if one_study else (slice(None), *rest)]
    if isinstance(key, slice):
      indices = range(*key.indices(len(self)))
    elif np.ndim(key) == 0:
      return self.study(self._check_index(operator.index(key)))
    else:
      indices = np.asarray(key)
      if indices.dtype == bool:
        indices = np.flatnonzero(indices)
      if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"ImageFiles indices must be integers, got {indices.dtype}")
    for index in indices:  # range errors before any reading
      self._check_index(int(index))
    out = np.empty((len(indices), *self.shape[1:]), np.float32)
    if self.threads > 1 and len(indices) > 1:
      with concurrent.futures.ThreadPoolExecutor(min(self.threads, len(indices))) as pool:
        for i, study in enumerate(pool.map(lambda j: self[int(j)], indices)):
          out[i] = study
    else:
      for i, index in enumerate(indices):
        out[i] = self[int(index)]
    return out

  def _check_index(self, index: int) -> int:
    """`index` in [0, N), negative counted from the end; IndexError otherwise."""
    if not -len(self) <= index < len(self):
      raise IndexError(f"study index {index} out of range for {len(self)} studies")
    return index % len(self)
