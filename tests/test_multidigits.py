"""MultiDigits benchmark: the data, Δm and ranks by hand, and a tiny end-to-end run."""

import json

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("sklearn")

import came_grad_jax as cg  # noqa: E402
from benchmarks import multidigits as md  # noqa: E402
from benchmarks.multidigits_data import DIGIT_SIZE, MAX_LEVEL, make_multidigits  # noqa: E402


@pytest.fixture(scope="module")
def digits():
  from sklearn.datasets import load_digits
  d = load_digits()
  return (d.images / MAX_LEVEL).astype(np.float32), d.target


def _matches(block, digit_blocks, classes, label):
  """Whether ``block`` is exactly one of ``digit_blocks`` whose class is ``label``."""
  hits = np.all(digit_blocks == block, axis=(1, 2))
  return bool(np.any(hits & (classes == label)))


def test_two_digits_left_top_right_bottom_labels_read_off_the_corners(digits):
  images, classes = digits
  data = make_multidigits(48, 24, seed=3, canvas=12, max_shift=0)
  far = 12 - DIGIT_SIZE
  for x, y in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() >= 0.0 and x.max() <= 1.0 and set(np.unique(y)) <= set(range(10))
    for image, (left, right) in zip(x[..., 0], y):
      # Rows only the left digit covers, then rows only the right one covers.
      assert _matches(image[:far, :DIGIT_SIZE], images[:, :far, :], classes, left)
      assert _matches(image[DIGIT_SIZE:, far:], images[:, DIGIT_SIZE - far:, :], classes, right)
      # Nothing outside the two digits.
      assert not image[:far, DIGIT_SIZE:].any() and not image[DIGIT_SIZE:, :far].any()


def test_overlap_keeps_the_brighter_pixel_and_shifts_stay_on_the_canvas():
  data = make_multidigits(200, 10, seed=0, canvas=12, max_shift=1)
  x = data.train_images[..., 0]
  assert x.shape == (200, 12, 12)
  # Each digit covers rows/columns 0..8 (left) or 3..11 (right): the overlap band is shared.
  band = x[:, 3:9, 3:9]
  assert band.max() == pytest.approx(1.0)
  assert np.mean(band > 0) > np.mean(x > 0)  # the overlap is denser than the whole image


def test_same_seed_same_data_other_seed_other_data():
  a, b = make_multidigits(32, 16, seed=5), make_multidigits(32, 16, seed=5)
  c = make_multidigits(32, 16, seed=6)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  assert not np.array_equal(a.train_images, c.train_images)


def test_train_and_test_pools_share_no_digit_image(digits):
  images, _ = digits
  data = make_multidigits(400, 200, seed=1, canvas=12, max_shift=0)
  far = 12 - DIGIT_SIZE

  def used(x):  # indices of the library digits whose top rows are each example's left corner
    tops = images[:, :far, :].reshape(len(images), -1)
    out = set()
    for image in x[..., 0]:
      hits = np.flatnonzero(np.all(tops == image[:far, :DIGIT_SIZE].ravel(), axis=1))
      if len(hits) == 1:  # unambiguous top rows only
        out.add(int(hits[0]))
    return out

  train, test = used(data.train_images), used(data.test_images)
  assert len(train) > 100 and len(test) > 50
  assert not train & test


@pytest.mark.parametrize("kwargs, name", [
    ({"num_train": 0}, "num_train"), ({"num_test": -1}, "num_test"),
    ({"canvas": 7}, "canvas"), ({"max_shift": 3}, "max_shift"), ({"max_shift": -1}, "max_shift"),
    ({"test_fraction": 1.0}, "test_fraction"), ({"num_train": 2.5}, "num_train"),
])
def test_bad_arguments_are_named(kwargs, name):
  args = {"num_train": 8, "num_test": 8, **kwargs}
  with pytest.raises(ValueError, match=name):
    make_multidigits(**args)


def test_delta_m_by_hand():
  assert md.delta_m(np.array([0.9, 0.8]), np.array([0.8, 0.8])) == pytest.approx(6.25)
  # A lower-is-better task flips the sign: (-(1 - 2) / 2 + (2 - 2) / 2) / 2 = 25%.
  assert md.delta_m(np.array([1.0, 2.0]), np.array([2.0, 2.0]),
                    lower_is_better=[True, False]) == pytest.approx(25.0)
  per_seed = md.delta_m(np.array([[0.5, 0.5], [0.6, 0.4]]), np.array([[0.5, 0.5], [0.5, 0.5]]))
  np.testing.assert_allclose(per_seed, [0.0, 0.0], atol=1e-12)
  with pytest.raises(ValueError, match="baseline"):
    md.delta_m(np.array([0.5, 0.5]), np.array([0.0, 0.5]))
  with pytest.raises(ValueError, match="lower_is_better"):
    md.delta_m(np.array([0.5, 0.5]), np.array([0.5, 0.5]), lower_is_better=[True])


def test_mean_rank_by_hand_with_ties():
  means = np.array([[0.9, 0.5], [0.8, 0.7], [0.8, 0.6]])
  # Task 1: ranks 1, 2.5, 2.5 (a tie); task 2: 3, 1, 2.
  np.testing.assert_allclose(md.mean_rank(means), [2.0, 1.75, 2.25])


def test_default_methods_are_the_whole_registry():
  assert md.default_methods() == cg.method_names("gradient") + cg.method_names("loss")
  assert set(md.default_methods()) == set(cg.method_names())


def test_unknown_method_is_named():
  with pytest.raises(ValueError, match="no_such_method"):
    md.make_trainer("no_such_method", apply=None, params=None, learning_rate=1e-3)


@pytest.mark.slow
def test_tiny_run_writes_table_json_and_figure(tmp_path):
  methods = ["ls", "came", "famo"]
  not_for_two_tasks = [m for m in ("krum",) if m in cg.method_names()]  # needs K >= 3
  results = md.main(["--tiny", "--methods", ",".join(methods + not_for_two_tasks),
                     "--out", str(tmp_path), "--compile-workers", "1"])
  assert results["methods"] == methods + [md.ONE_PASS, *md.SINGLE_TASK]
  assert set(results["skipped"]) == set(not_for_two_tasks)
  payload = json.loads((tmp_path / "multidigits.json").read_text())
  assert payload["benchmark"] == "multidigits" and payload["machine"]["jax"]
  rows = {r["method"]: r for r in payload["summary"]}
  assert set(rows) == set(methods + [md.ONE_PASS, *md.SINGLE_TASK])
  assert rows["ls"]["delta_m"] == 0.0 and rows["ls"]["time_ratio"] == 1.0
  for r in rows.values():
    assert len(r["accuracy"]) == 2 and all(0.0 <= a <= 1.0 for a in r["accuracy"])
    assert np.isfinite(r["delta_m"]) and r["step_ms"] > 0 and r["time_ratio"] > 0
  # The registry's LS (per-task gradients, summed) and the one-pass LS are the same update.
  np.testing.assert_allclose(rows[md.ONE_PASS]["accuracy"], rows["ls"]["accuracy"], atol=2 / 128)
  ranks = sorted(r["mean_rank"] for r in rows.values() if r["mean_rank"] is not None)
  assert len(ranks) == 3 and 1.0 <= ranks[0] and ranks[-1] <= 3.0
  for name in methods:  # Δm against the single-task models, and the paired difference to LS
    assert np.isfinite(rows[name]["delta_m_stl"])
  assert rows["ls"]["minus_ls"] == 0.0
  table = (tmp_path / "table.md").read_text()
  assert "Δm% vs single-task" in table and "(`came`)" in table and md.ONE_PASS in table
  assert "stl_left" in table
  assert (tmp_path / "multidigits.png").stat().st_size > 10_000


def test_single_task_baseline_and_paired_difference_by_hand():
  # Two seeds; the single-task models reach 0.8 / 0.5 on their own task.
  acc = {"ls": [[0.8, 0.5], [0.8, 0.5]], "came": [[0.88, 0.5], [0.8, 0.55]],
         "stl_left": [[0.8, 0.1], [0.8, 0.1]], "stl_right": [[0.1, 0.5], [0.1, 0.5]]}
  results = {"seeds": [0, 1], "runs": {m: {str(s): {"test_accuracy": a[s]} for s in (0, 1)}
                                       for m, a in acc.items()},
             "times": {m: {"step_ms": 1.0, "ratio_to_ls": 1.0, "compile_s": 0.0} for m in acc}}
  rows = {r["method"]: r for r in md.summarize(results, list(acc))}
  # came, seed 0: (0.08 / 0.8 + 0) / 2 = 5%; seed 1: (0 + 0.05 / 0.5) / 2 = 5%.
  np.testing.assert_allclose(rows["came"]["delta_m_stl_per_seed"], [5.0, 5.0])
  assert rows["came"]["delta_m_stl"] == pytest.approx(5.0)
  assert rows["ls"]["delta_m_stl"] == pytest.approx(0.0)
  # LS's Δm is 0 on both seeds, so came's paired difference is 5 ± 0: not within one std.
  assert rows["came"]["minus_ls"] == pytest.approx(5.0)
  assert rows["came"]["within_one_std_of_ls"] is False
  assert "delta_m_stl" not in rows["stl_left"] and rows["stl_left"]["mean_rank"] is None
  table = md.markdown_table(list(rows.values()))
  assert "(baseline)" in table and "**no**" in table
