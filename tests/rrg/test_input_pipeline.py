"""Tests for the Grain training pipeline: order, resumption, workers, and constant memory."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from examples.rrg.data import input_pipeline
from examples.rrg.data.input_pipeline import Split, StudySource, synthetic_dataset, train_iterator
from examples.rrg.evaluation.labeler import OBSERVATIONS

Image = pytest.importorskip("PIL.Image")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _indexed_split(n):
  """A split whose study i has image value i, token 4 + i and label row i % 4."""
  index = np.arange(n)
  return Split(images=np.broadcast_to(index[:, None, None, None, None] / n,
                                      (n, 1, 2, 2, 1)).astype(np.float32),
               tokens=np.stack([np.ones(n), 4 + index, 2 * np.ones(n)], 1).astype(np.int32),
               labels=np.repeat((index % 4)[:, None], 14, 1).astype(np.int32),
               reports=[f"r{i}" for i in index], ids=[f"s{i}" for i in index])


def _studies(batch):
  return (batch["tokens"][:, 1] - 4).tolist()


def _take(it, k):
  return [next(it) for _ in range(k)]


def test_batches_have_the_train_step_format():
  splits, _ = synthetic_dataset(24, 4, 4, image_size=16, max_len=20)
  train = splits["train"]
  batch = next(train_iterator(train, 8, seed=0))
  assert sorted(batch) == ["images", "labels", "tokens"]
  assert batch["images"].shape == (8, 1, 16, 16, 1) and batch["images"].dtype == np.float32
  assert batch["tokens"].shape == (8, 20) and batch["tokens"].dtype == np.int32
  assert batch["labels"].shape == (8, 14) and batch["labels"].dtype == np.int32
  # Every row is a study of the split, images, tokens and labels together.
  for image, tokens, labels in zip(batch["images"], batch["tokens"], batch["labels"]):
    i = next(j for j in range(len(train)) if np.array_equal(train.images[j], image))
    np.testing.assert_array_equal(train.tokens[i], tokens)
    np.testing.assert_array_equal(train.labels[i], labels)
  assert repr(StudySource(train)) == "StudySource(24 studies, images (1, 16, 16, 1))"


def test_every_epoch_is_a_new_permutation():
  it = train_iterator(_indexed_split(12), 4, seed=3)
  epochs = [sum((_studies(b) for b in _take(it, 3)), []) for _ in range(3)]
  for order in epochs:
    assert sorted(order) == list(range(12))
  assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(12))
  # 10 studies in batches of 4: batches run across epochs, and each epoch is still complete.
  stream = sum((_studies(b) for b in _take(train_iterator(_indexed_split(10), 4, seed=0), 5)),
               [])
  assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))


def test_stream_of_studies_does_not_depend_on_the_batch_size():
  split = _indexed_split(10)
  ones = input_pipeline.train_dataset(split, 1, seed=4)
  threes = input_pipeline.train_dataset(split, 3, seed=4)
  for step in range(7):  # across three epochs
    assert _studies(threes[step]) == sum((_studies(ones[3 * step + i]) for i in range(3)), [])


def test_order_depends_on_the_seed_only():
  split = _indexed_split(16)
  first = [_studies(b) for b in _take(train_iterator(split, 4, seed=7), 8)]
  assert first == [_studies(b) for b in _take(train_iterator(split, 4, seed=7), 8)]
  other = [_studies(b) for b in _take(train_iterator(split, 4, seed=8), 8)]
  assert first != other
  # Grain reshuffles epoch e with seed + e; seeds are hashed first, so seed 7's second epoch
  # is not seed 8's first.
  assert first[4:] != other[:4]


def test_state_and_start_step_resume_the_same_batches():
  split = _indexed_split(10)
  it = train_iterator(split, 4, seed=1)
  _take(it, 4)
  state = it.get_state()
  expected = [_studies(b) for b in _take(it, 4)]
  fresh = train_iterator(split, 4, seed=1)
  fresh.set_state(state)
  assert [_studies(b) for b in _take(fresh, 4)] == expected
  assert [_studies(b) for b in _take(train_iterator(split, 4, seed=1, start_step=4), 4)] == (
      expected)


def _r2gen_split(root, n=6):
  """A MIMIC-style split of n studies; study i has 16-bit grey level 1000 (i + 1) and the
  report "Finding i."."""
  image_dir = root / "images"
  annotation = {}
  for split, count in (("train", n), ("val", 1), ("test", 1)):
    annotation[split] = []
    for i in range(count):
      relative = f"p10/p{i:08d}/s{split}{i}/0.png"
      (image_dir / relative).parent.mkdir(parents=True)
      Image.fromarray(np.full((8, 8), 1000 * (i + 1), np.uint16)).save(image_dir / relative)
      annotation[split].append({"id": f"{split}{i}", "report": f"Finding {i}.",
                                "image_path": [relative]})
  (root / "annotation.json").write_text(json.dumps(annotation))
  return input_pipeline.load_r2gen(root / "annotation.json", image_dir, dataset="mimic_cxr",
                                   image_size=4, min_count=1)


def test_r2gen_images_go_through_the_pipeline(tmp_path):
  splits, tokenizer = _r2gen_split(tmp_path)
  batch = next(train_iterator(splits["train"], 6, seed=0))
  for image, tokens in zip(batch["images"], batch["tokens"]):
    i = int(tokenizer.decode(tokens).split()[1])  # "finding i ."
    assert np.linalg.norm(image - 1000 * (i + 1) / 65535) <= 1e-6 * np.linalg.norm(image)


def test_bad_arguments():
  split = _indexed_split(6)
  for kwargs, message in (({"batch_size": 7}, "larger than the split"),
                          ({"batch_size": 0}, "batch_size"), ({"seed": -1}, "seed"),
                          ({"workers": -1}, "workers"), ({"start_step": -2}, "start_step")):
    args = {"batch_size": 2, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
      train_iterator(split, args.pop("batch_size"), args.pop("seed"), **args)


@pytest.mark.slow
def test_worker_process_gives_the_same_batches(tmp_path):
  # Images read from files in the worker (the split is pickled into it).
  split = _r2gen_split(tmp_path)[0]["train"]
  expected = _take(train_iterator(split, 2, seed=2), 6)
  it = train_iterator(split, 2, seed=2, workers=1)
  try:
    got = _take(it, 3)
    state = it.get_state()
    got += _take(it, 3)
    it.set_state(state)
    again = _take(it, 3)
  finally:
    it.close()
  for a, b in zip(got + again, expected + expected[3:]):
    assert all(np.array_equal(a[k], b[k]) for k in ("images", "tokens", "labels"))


_MEASURE = textwrap.dedent("""
    import json, os, sys, tracemalloc
    import grain  # imported once, before measuring: its import alone is ~300 MB and seconds
    from examples.rrg.data.input_pipeline import load_r2gen, train_iterator

    def rss():  # resident pages now, from /proc/self/statm, in bytes
      with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

    def measure(root, n):
      before = rss()
      splits, _ = load_r2gen(root + "/annotation.json", root + "/images", dataset="mimic_cxr",
                             image_size=96, min_count=1, labels_path=root + "/labels.csv")
      tracemalloc.start()  # Python and NumPy allocations while reading the images
      it = train_iterator(splits["train"], 50, seed=0)
      for _ in range(n // 50):  # one epoch: every image read once
        batch = next(it)
      return {"traced_peak": tracemalloc.get_traced_memory()[1], "rss_growth": rss() - before}

    for root, n in zip(sys.argv[1::2], sys.argv[2::2]):
      read, write = os.pipe()
      if os.fork() == 0:  # each size in a fresh copy of this process
        os.write(write, json.dumps(measure(root, int(n))).encode())
        os._exit(0)
      os.close(write)
      os.wait()
      print(n, os.read(read, 1000).decode())
""")


def _write_many(root, n):
  """n MIMIC-style studies of one 8x8 PNG each (and one val and test study), with labels."""
  buffer = io.BytesIO()
  Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format="PNG")
  annotation = {"train": [], "val": [], "test": []}
  for i in range(n + 2):
    split = "train" if i < n else ("val" if i == n else "test")
    relative = f"p1{i % 10}/p{i // 100:08d}/s{i:08d}.png"
    (root / "images" / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / "images" / relative).write_bytes(buffer.getvalue())
    annotation[split].append({"id": f"d{i}", "report": "No acute cardiopulmonary process.",
                              "image_path": [relative]})
  (root / "annotation.json").write_text(json.dumps(annotation))
  # External labels (all blank): the rule-based labeler's time is not what is measured here.
  rows = ["id," + ",".join(OBSERVATIONS)] + [f"d{i}" + "," * len(OBSERVATIONS)
                                             for i in range(n + 2)]
  (root / "labels.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_studies(tmp_path):
  args = []
  for n in (300, 3000):
    _write_many(tmp_path / str(n), n)
    args += [str(tmp_path / str(n)), str(n)]
  out = subprocess.run([sys.executable, "-c", _MEASURE, *args], cwd=REPO, capture_output=True,
                       text=True, timeout=600, check=True)
  measured = {int(n): json.loads(m) for n, m in
              (line.split(" ", 1) for line in out.stdout.strip().splitlines()[-2:])}
  # Holding the images would take 2700 * 96 * 96 * 4 bytes = 100 MB more for 3000 studies
  # than for 300; what the pipeline holds per study (tokens, labels, id, paths) is ~1 kB.
  held_images = 2700 * 96 * 96 * 4
  traced = measured[3000]["traced_peak"] - measured[300]["traced_peak"]
  rss = measured[3000]["rss_growth"] - measured[300]["rss_growth"]
  assert traced < 0.1 * held_images, measured
  assert rss < 0.2 * held_images, measured
