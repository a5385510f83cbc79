"""Datasets for radiology report generation: synthetic studies and R2Gen-layout real data.

Both loaders return `{"train", "val", "test"}` `Split`s and the `Tokenizer` built on the
training reports; `batches` iterates a split as NumPy dictionaries.

Example:
  >>> splits, tokenizer = synthetic_dataset(16, 4, 4, image_size=32)
  >>> batch = next(batches(splits["train"], batch_size=8))
  >>> batch["images"].shape, batch["tokens"].shape, batch["labels"].shape
  ((8, 1, 32, 32, 1), (8, 48), (8, 14))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from examples.rrg import r2gen, synthetic
from examples.rrg.labeler import OBSERVATIONS, label_reports, load_labels_file
from examples.rrg.tokenizer import Tokenizer, clean_report

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Split:
  """One split of a dataset; all fields have N entries."""

  images: np.ndarray
  """float32 (N, V, H, W, 1) in [0, 1]; V views (1 synthetic / MIMIC-CXR, 2 IU X-Ray)."""
  tokens: np.ndarray
  """int32 (N, T): `Tokenizer.encode` of the reports."""
  labels: np.ndarray
  """int32 (N, 14): BLANK/POSITIVE/NEGATIVE/UNCERTAIN per CheXpert observation."""
  reports: list[str]
  """Cleaned reference reports."""
  ids: list[str]

  def __post_init__(self):
    n = len(self.ids)
    if self.images.ndim != 5 or self.images.shape[-1] != 1:
      raise ValueError(f"images must have shape (N, V, H, W, 1), got {self.images.shape}")
    if self.tokens.ndim != 2:
      raise ValueError(f"tokens must have shape (N, T), got {self.tokens.shape}")
    if self.labels.shape != (n, len(OBSERVATIONS)):
      raise ValueError(f"labels must have shape ({n}, {len(OBSERVATIONS)}), "
                       f"got {self.labels.shape}")
    lengths = {len(self.images), len(self.tokens), len(self.reports), n}
    if len(lengths) != 1:
      raise ValueError(f"fields must have the same length, got {sorted(lengths)}")

  def __len__(self) -> int:
    return len(self.ids)


def synthetic_dataset(num_train: int = 512, num_val: int = 64, num_test: int = 128, *,
                      image_size: int = 64, max_len: int = 48,
                      seed: int = 0) -> tuple[dict[str, Split], Tokenizer]:
  """Synthetic chest radiographs with reports and labels (see `synthetic`).

  Each split has its own random stream derived from `seed`, so a split does not change when
  the size of another one does. Reports are kept within `max_len - 2` words where possible
  (normal-study sentences and negations are left out of long reports), so that they fit the
  tokens; the labels are always those the report states. The vocabulary is built on the
  training reports.

  Returns:
    ({"train", "val", "test"} splits with one view per study, tokenizer).
  """
  sizes = {"train": num_train, "val": num_val, "test": num_test}
  streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
  studies = {
      name: synthetic.generate(sizes[name], image_size=image_size,
                               seed=np.random.default_rng(stream), max_words=max_len - 2)
      for name, stream in zip(SPLITS, streams)
  }
  tokenizer = Tokenizer.build(studies["train"].reports)
  splits = {
      name: Split(
          images=s.images[:, None, :, :, None],
          tokens=tokenizer.encode_batch(s.reports, max_len),
          labels=s.labels,
          reports=list(s.reports),
          ids=[f"{name}-{i:06d}" for i in range(len(s.reports))],
      )
      for name, s in studies.items()
  }
  return splits, tokenizer


def load_r2gen(ann_path: str | os.PathLike, image_dir: str | os.PathLike, *,
               dataset: str = "iu_xray", image_size: int = 64, max_len: int = 60,
               min_count: int = 3,
               labels_path: str | os.PathLike | None = None) -> tuple[dict[str, Split], Tokenizer]:
  """IU X-Ray or MIMIC-CXR in the R2Gen layout (see `r2gen`).

  Reports are cleaned with `clean_report`; the vocabulary holds the training words seen at
  least `min_count` times; images are loaded as grayscale, resized to `image_size`.
  R2Gen's settings are max_len 60, min_count 3 for IU X-Ray and 100, 10 for MIMIC-CXR.

  Args:
    ann_path: the `annotation.json`.
    image_dir: the folder that image paths are relative to.
    dataset: "iu_xray" (two views) or "mimic_cxr" (one view).
    image_size: height and width of the loaded images.
    max_len: token length (bos and eos included).
    min_count: vocabulary frequency threshold.
    labels_path: optional CSV of an external labeler (e.g. CheXbert) with an "id" column,
      read by `load_labels_file`; by default the reports are labelled with `label_reports`.

  Returns:
    ({"train", "val", "test"} splits, tokenizer).
  """
  records = r2gen.read_annotation(ann_path, dataset)
  reports = {name: [clean_report(r.report, dataset) for r in records[name]] for name in SPLITS}
  tokenizer = Tokenizer.build(reports["train"], min_count=min_count)
  splits = {}
  for name in SPLITS:
    ids = [r.id for r in records[name]]
    labels = (load_labels_file(labels_path, ids) if labels_path is not None
              else label_reports(reports[name]))
    splits[name] = Split(
        images=r2gen.load_images(records[name], image_dir, image_size),
        tokens=tokenizer.encode_batch(reports[name], max_len),
        labels=labels,
        reports=reports[name],
        ids=ids,
    )
  return splits, tokenizer


def batches(split: Split, batch_size: int, rng: np.random.Generator | None = None, *,
            drop_last: bool = True) -> Iterator[dict[str, np.ndarray]]:
  """Iterates over a split in batches of {"images", "tokens", "labels"}.

  Args:
    split: the split.
    batch_size: examples per batch.
    rng: if given, the order is shuffled with it; otherwise examples come in order.
    drop_last: drop the final incomplete batch (so every batch has `batch_size` examples).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  n = len(split)
  order = rng.permutation(n) if rng is not None else np.arange(n)
  stop = n - n % batch_size if drop_last else n
  for start in range(0, stop, batch_size):
    idx = order[start:start + batch_size]
    yield {"images": split.images[idx], "tokens": split.tokens[idx],
           "labels": split.labels[idx]}
