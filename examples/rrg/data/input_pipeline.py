"""Datasets for radiology report generation and their streaming input pipeline (Grain).

Both loaders return `{"train", "val", "test"}` `Split`s and the `Tokenizer` built on the
training reports. Synthetic studies are generated in memory; R2Gen-layout data (IU X-Ray,
MIMIC-CXR) keeps only its tokens, labels and ids in memory and reads each image from disk when a
batch needs it (`r2gen.ImageFiles`), so memory does not grow with the number of studies.

Training batches of either come from one Grain pipeline, `train_iterator`: a random-access
`StudySource` over the split, shuffled by seed (a new order every epoch), batched, read by
threads or worker processes; its iterator state goes into the Orbax checkpoint
(`checkpoint.save(..., data_iterator=...)`) so that a resumed run sees the same next batch.
`batches` iterates a split once, in order or shuffled.

Example:
  >>> splits, tokenizer = synthetic_dataset(16, 4, 4, image_size=32)
  >>> batch = next(train_iterator(splits["train"], batch_size=8, seed=0))
  >>> batch["images"].shape, batch["tokens"].shape, batch["labels"].shape
  ((8, 1, 32, 32, 1), (8, 48), (8, 14))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from examples.rrg.data import r2gen, synthetic
from examples.rrg.data.tokenizer import Tokenizer, clean_report
from examples.rrg.evaluation.labeler import OBSERVATIONS, label_reports, load_labels_file

if TYPE_CHECKING:
  import grain

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Split:
  """One split of a dataset; all fields have N entries."""

  images: np.ndarray | r2gen.ImageFiles
  """float32 (N, V, H, W, 1) in [0, 1]; V views (1 synthetic / MIMIC-CXR, 2 IU X-Ray). An
  in-memory array (synthetic data) or `r2gen.ImageFiles`, which reads images when indexed."""
  tokens: np.ndarray
  """int32 (N, T): `Tokenizer.encode` of the reports."""
  labels: np.ndarray
  """int32 (N, 14): BLANK/POSITIVE/NEGATIVE/UNCERTAIN per CheXpert observation."""
  reports: list[str]
  """Reference reports. R2Gen data: the text the model is trained to produce, i.e. `tokens`
  decoded (cleaned, cut to T - 2 words, out-of-vocabulary words as "<unk>"). Synthetic data:
  the generated reports, which equal `tokens` decoded unless longer than T - 2 words (none is
  at the default lengths; see `synthetic_dataset`)."""
  ids: list[str]
  ce_labels: np.ndarray | None = None
  """int32 (N, 14) or None: the reference labels clinical efficacy compares the generated
  reports' labels with. They must come from the labeler that labels the generated reports (the
  rule-based one), so with an external labels file (`load_r2gen`'s `labels_path`, which sets
  `labels`, the cls task's targets) they are the rule-based labels of `reports`. None: `labels`."""

  def __post_init__(self):
    n = len(self.ids)
    if self.images.ndim != 5 or self.images.shape[-1] != 1:
      raise ValueError(f"images must have shape (N, V, H, W, 1), got {self.images.shape}")
    if self.tokens.ndim != 2:
      raise ValueError(f"tokens must have shape (N, T), got {self.tokens.shape}")
    if self.labels.shape != (n, len(OBSERVATIONS)):
      raise ValueError(f"labels must have shape ({n}, {len(OBSERVATIONS)}), "
                       f"got {self.labels.shape}")
    if self.ce_labels is not None and self.ce_labels.shape != self.labels.shape:
      raise ValueError(f"ce_labels must have shape {self.labels.shape}, "
                       f"got {self.ce_labels.shape}")
    lengths = {len(self.images), len(self.tokens), len(self.reports), n}
    if len(lengths) != 1:
      raise ValueError(f"fields must have the same length, got {sorted(lengths)}")

  def __len__(self) -> int:
    return len(self.ids)

  @property
  def reference_labels(self) -> np.ndarray:
    """The labels clinical efficacy scores against (`ce_labels`, else `labels`)."""
    return self.labels if self.ce_labels is None else self.ce_labels


# The order in which `synthetic_dataset(..., disjoint=s)` moves the classification targets to
# the independent set: every other observation by prevalence first (so that a share of one half
# moves half of the frequent ones), then the rest.
DISJOINT_ORDER = ("Cardiomegaly", "Pleural Effusion", "Atelectasis", "Consolidation",
                  "Lung Lesion", "Pleural Other", "Pneumonia", "Support Devices", "Lung Opacity",
                  "Edema", "Enlarged Cardiomediastinum", "Pneumothorax", "Fracture", "No Finding")


def disjoint_observations(share: float) -> tuple[str, ...]:
  """The observations whose classification targets move at ``disjoint = share``."""
  if not 0.0 <= share <= 1.0:
    raise ValueError(f"disjoint must be in [0, 1], got {share}")
  return DISJOINT_ORDER[:round(share * len(DISJOINT_ORDER))]


def synthetic_dataset(num_train: int = 512, num_val: int = 64, num_test: int = 128, *,
                      image_size: int = 64, max_len: int = 48, seed: int = 0,
                      disjoint: float | None = None,
                      independent_style: str = "opposite") -> tuple[dict[str, Split], Tokenizer]:
  """Synthetic chest radiographs with reports and labels (see `synthetic`).

  Each split has its own random stream derived from `seed`, so a split does not change when
  the size of another one does. Reports are kept within `max_len - 2` words where possible
  (normal-study sentences and negations are left out of long reports), so that they fit the
  tokens; the labels are always those the report states. The vocabulary is built on the
  training reports.

  ``disjoint`` (the conflict dial, `examples.rrg.conflict`): when given, every image also shows
  an independent second set of findings (`synthetic.generate(..., independent=True)`: same
  drawing code and places, opposite brightness, never reported), and the classification
  targets (`Split.labels`) of a share ``disjoint`` of the 14 observations (in the order of
  `DISJOINT_ORDER`) are those of the second set: at 0 the report's own observations, at 1 only
  findings the report never mentions. Clinical efficacy keeps scoring against the report's
  labels (`Split.ce_labels`). ``independent_style`` says how that second set is drawn
  (`synthetic.INDEPENDENT_STYLES`: ``"opposite"``, the default, or ``"flipped"``).

  Returns:
    ({"train", "val", "test"} splits with one view per study, tokenizer).
  """
  sizes = {"train": num_train, "val": num_val, "test": num_test}
  streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
  studies = {
      name: synthetic.generate(sizes[name], image_size=image_size,
                               seed=np.random.default_rng(stream), max_words=max_len - 2,
                               independent=disjoint is not None,
                               independent_style=independent_style)
      for name, stream in zip(SPLITS, streams)
  }
  moved = [] if disjoint is None else [OBSERVATIONS.index(o)
                                       for o in disjoint_observations(disjoint)]
  tokenizer = Tokenizer.build(studies["train"].reports)

  def split(name, s):
    labels = s.labels.copy()
    labels[:, moved] = s.independent_labels[:, moved] if moved else labels[:, moved]
    return Split(images=s.images[:, None, :, :, None],
                 tokens=tokenizer.encode_batch(s.reports, max_len), labels=labels,
                 reports=list(s.reports), ids=[f"{name}-{i:06d}" for i in range(len(s.reports))],
                 ce_labels=s.labels if disjoint is not None else None)

  return {name: split(name, s) for name, s in studies.items()}, tokenizer


def load_r2gen(ann_path: str | os.PathLike, image_dir: str | os.PathLike, *,
               dataset: str = "iu_xray", image_size: int = 64, max_len: int | None = None,
               min_count: int | None = None, labels_path: str | os.PathLike | None = None,
               check_files: bool = True) -> tuple[dict[str, Split], Tokenizer]:
  """IU X-Ray or MIMIC-CXR in the R2Gen layout (see `r2gen`).

  Reports are cleaned with R2Gen's rules for `dataset` (`clean_report`); the vocabulary holds
  the training words seen at least `min_count` times. Each report is encoded to `max_len`
  tokens, and the reference text (`Split.reports`) is those tokens decoded: the cleaned report
  cut to `max_len - 2` words, which is what the model is trained to produce. The rule-based
  reference labels are read from that same text, so that a report and its labels agree (a
  finding mentioned only after the cut is not a label the model could learn to report).
  Images stay on disk and are read when indexed (`r2gen.ImageFiles`).

  Args:
    ann_path: the `annotation.json`.
    image_dir: the folder that image paths are relative to.
    dataset: "iu_xray" (two views) or "mimic_cxr" (one view).
    image_size: height and width of the loaded images.
    max_len: token length (bos and eos included); None: R2Gen's for `dataset`
      (`r2gen.DATASET_DEFAULTS`: 60 for IU X-Ray, 100 for MIMIC-CXR).
    min_count: vocabulary frequency threshold; None: R2Gen's (3 for IU X-Ray, 10 for
      MIMIC-CXR).
    labels_path: optional CSV of an external labeler (e.g. CheXbert) with an "id" column,
      read by `load_labels_file`: the cls task's targets (`Split.labels`); those labels are of
      whatever text the external labeler read (usually the full report). Clinical efficacy
      still compares rule-based labels on both sides (`Split.ce_labels`), since the generated
      reports can only be labelled by the rule-based labeler here; to score both sides with
      the external labeler, label the written `reports.json` with it and run
      `python -m examples.rrg.evaluation.score --hyp-labels ... --ref-labels ...`.
    check_files: check that every image exists before returning (see `r2gen.ImageFiles`).

  Returns:
    ({"train", "val", "test"} splits, tokenizer).

  Raises:
    FileNotFoundError: the annotation, the image folder or an image is missing.
    ValueError: the annotation is malformed (see `r2gen.read_annotation`), or a report is
      empty or has no word left after cleaning (the message names the study).
  """
  defaults = r2gen.DATASET_DEFAULTS.get(dataset)
  if defaults is None:
    raise ValueError(f"dataset must be one of {tuple(r2gen.DATASET_DEFAULTS)}, got {dataset!r}")
  max_len = defaults.max_len if max_len is None else max_len
  min_count = defaults.min_count if min_count is None else min_count
  records = r2gen.read_annotation(ann_path, dataset)
  cleaned = {}
  for name in SPLITS:
    cleaned[name] = [clean_report(r.report, dataset) for r in records[name]]
    for record, text in zip(records[name], cleaned[name]):
      if not text:
        raise ValueError(f"{os.fspath(ann_path)}: study {record.id!r} ({name}) has no word "
                         f"left after cleaning its report {record.report!r}")
  tokenizer = Tokenizer.build(cleaned["train"], min_count=min_count)
  splits = {}
  for name in SPLITS:
    ids = [r.id for r in records[name]]
    tokens = tokenizer.encode_batch(cleaned[name], max_len)
    references = tokenizer.decode_batch(tokens)
    rule_based = label_reports(references)
    external = load_labels_file(labels_path, ids) if labels_path is not None else None
    splits[name] = Split(
        images=r2gen.ImageFiles(records[name], image_dir, image_size, check_files=check_files),
        tokens=tokens, labels=rule_based if external is None else external,
        reports=references, ids=ids, ce_labels=None if external is None else rule_based)
  return splits, tokenizer


# ------------------------------------------------------------------------------------------------
# Grain pipeline
# ------------------------------------------------------------------------------------------------
class StudySource:
  """Grain random-access source over a `Split`: record i is study i as NumPy arrays.

  ``source[i]`` is ``{"images": (V, H, W, 1) float32, "tokens": (T,) int32,
  "labels": (14,) int32}``; images of `r2gen.ImageFiles` are read from disk at that moment.
  It implements `grain.sources.RandomAccessDataSource` (``__len__``, ``__getitem__``) and is
  picklable, so worker processes can read from it.
  """

  def __init__(self, split: Split):
    self.split = split

  def __len__(self) -> int:
    return len(self.split)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    split = self.split
    return {"images": np.asarray(split.images[index], np.float32),
            "tokens": split.tokens[index], "labels": split.labels[index]}

  def __repr__(self) -> str:
    return f"StudySource({len(self)} studies, images {tuple(self.split.images.shape[1:])})"


def _shuffle_seed(seed: int) -> int:
  """A 32-bit shuffle seed derived from `seed`.

  Grain reshuffles epoch e with seed + e, so consecutive raw seeds would share orders (seed
  0's second epoch would be seed 1's first); hashing the seed first keeps runs apart.
  """
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
  return int(np.random.SeedSequence(int(seed)).generate_state(1)[0])


def _allow_worker_processes() -> None:
  """Grain's worker processes read absl flags; a program that does not use absl has not
  parsed them, which Grain would report as an error."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def train_dataset(split: Split, batch_size: int, seed: int) -> grain.MapDataset:
  """The endless training batches of `split` as a `grain.MapDataset`: element s is the batch
  of step s.

  Studies are shuffled with a seed derived from `seed`, in a new order every epoch; batches run
  across epoch boundaries, so every study is seen once per epoch. The stream of studies does
  not depend on `batch_size`: batch s holds studies ``s * batch_size ... (s + 1) * batch_size
  - 1`` of ``train_dataset(split, 1, seed)`` (which `sharding.local_batches` relies on).
  """
  import grain  # pylint: disable=import-outside-toplevel

  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
  if batch_size > len(split):
    raise ValueError(f"batch_size={batch_size} is larger than the split ({len(split)} examples)")
  return (grain.MapDataset.source(StudySource(split))
          .shuffle(seed=_shuffle_seed(seed))
          .repeat()
          .batch(int(batch_size), drop_remainder=True))


def train_iterator(split: Split, batch_size: int, seed: int, *, workers: int = 0,
                   start_step: int = 0, read_threads: int = 2,
                   prefetch: int = 2) -> grain.DatasetIterator:
  """An endless iterator of training batches ``{"images", "tokens", "labels"}``.

  The batch at step s depends only on (`split`, `batch_size`, `seed`, s): see
  `train_dataset`. The iterator is a `grain.DatasetIterator`: ``get_state()`` /
  ``set_state()`` capture and restore its position (``checkpoint.save(...,
  data_iterator=it)`` stores it with Grain's Orbax handler), and a run resumed from it sees the
  same next batch.

  Args:
    split: the training split.
    batch_size: examples per batch.
    seed: shuffling seed.
    workers: worker processes that read and batch (0: threads of this process). They are
      started by spawning, so a script that uses them needs an ``if __name__ == "__main__":``
      guard; close the iterator (``it.close()``) when done with it. A state saved with one
      number of workers restores only into an iterator with the same number.
    start_step: the first batch to yield (to resume by step count when no iterator state was
      saved; do not combine with `set_state`).
    read_threads: threads reading batches ahead (in each worker, if any).
    prefetch: batches read ahead by those threads.

  Example:
    >>> splits, _ = synthetic_dataset(16, 4, 4, image_size=16)
    >>> it = train_iterator(splits["train"], 4, seed=0)
    >>> first, state = next(it), it.get_state()
    >>> second = next(it)
    >>> it.set_state(state)
    >>> bool((next(it)["tokens"] == second["tokens"]).all())
    True
  """
  import grain  # pylint: disable=import-outside-toplevel

  if workers < 0:
    raise ValueError(f"workers must be >= 0, got {workers}")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  dataset = train_dataset(split, batch_size, seed)
  if start_step:
    dataset = dataset[start_step:]
  iterable = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch))
  if workers:
    _allow_worker_processes()
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(iterable)


def batches(split: Split, batch_size: int, rng: np.random.Generator | None = None, *,
            drop_last: bool = True) -> Iterator[dict[str, np.ndarray]]:
  """Iterates over a split once, in batches of {"images", "tokens", "labels"}.

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
