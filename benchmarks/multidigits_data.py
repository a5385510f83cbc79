"""MultiDigits: two overlapping handwritten digits per image, built from scikit-learn's digits.

Multi-MNIST (Sener & Koltun, NeurIPS 2018) puts one MNIST digit at the top-left
and another at the bottom-right of a larger canvas, so that they overlap, and
asks for both classes: two classification tasks on one input. This module
builds the same kind of data from the 1,797 8x8 digits that ship inside
scikit-learn's wheel (``sklearn.datasets.load_digits``: no download):

* the digits are split once into a training pool and a test pool (a permutation
  drawn from ``seed``), so no test image contains a digit seen in training;
* each example draws a left and a right digit (two different images) from its
  pool, places the left one near the top-left corner and the right one near the
  bottom-right corner of a ``canvas x canvas`` image, each shifted by up to
  ``max_shift`` pixels (the random shifts of Multi-MNIST), and keeps the
  pixelwise maximum where they overlap;
* pixels are scaled from the digits' 0..16 to [0, 1].

With the defaults (8x8 digits on a 12x12 canvas, shifts of up to 1 pixel) the two
digits overlap on 5 to 7 of their 8 rows and columns: 4 pixels apart on each
axis, plus or minus the two shifts, as Multi-MNIST's 28-pixel digits 8 pixels
apart on a 36-pixel canvas overlap on 20 of 28.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Side of scikit-learn's digit images.
DIGIT_SIZE = 8
#: The digits' largest pixel value (4-bit grey levels).
MAX_LEVEL = 16.0


class MultiDigits(NamedTuple):
  """A fixed train/test split of two-digit images (float32 in [0, 1], labels int32).

  Attributes:
    train_images: ``(num_train, canvas, canvas, 1)``.
    train_labels: ``(num_train, 2)``: the left digit's class, then the right one's.
    test_images: ``(num_test, canvas, canvas, 1)``.
    test_labels: ``(num_test, 2)``.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


def _check_positive_int(name: str, value: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _compose(digits: np.ndarray, num: int, canvas: int, max_shift: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """``num`` images of a left and a right digit of ``digits`` (n, 8, 8), and their indices."""
  n = digits.shape[0]
  left = rng.integers(0, n, size=num)
  right = (left + rng.integers(1, n, size=num)) % n  # a different image than the left one
  shifts = rng.integers(0, max_shift + 1, size=(num, 4))
  far = canvas - DIGIT_SIZE  # the right digit's corner before its shift
  images = np.zeros((num, canvas, canvas), np.float32)
  d = DIGIT_SIZE
  for i in range(num):
    r0, c0 = shifts[i, 0], shifts[i, 1]
    r1, c1 = far - shifts[i, 2], far - shifts[i, 3]
    images[i, r0:r0 + d, c0:c0 + d] = digits[left[i]]
    window = images[i, r1:r1 + d, c1:c1 + d]  # a view: the overlap keeps the brighter pixel
    np.maximum(window, digits[right[i]], out=window)
  return images[..., None], np.stack([left, right], axis=1)


def make_multidigits(num_train: int = 4000, num_test: int = 1000, *, seed: int = 0,
                     canvas: int = 12, max_shift: int = 1,
                     test_fraction: float = 0.25) -> MultiDigits:
  """A MultiDigits train/test split, the same for the same arguments.

  Args:
    num_train: training examples (pairs drawn with replacement from the training pool).
    num_test: test examples, from the test pool.
    seed: draws the digit split, the pairs and the shifts.
    canvas: side of the composed image; the digits' corners are ``canvas - 8``
      pixels apart on each axis before the shifts.
    max_shift: each digit moves toward the centre by 0..``max_shift`` pixels per axis.
    test_fraction: share of scikit-learn's 1,797 digits held out for the test pool.

  Returns:
    A :class:`MultiDigits`.

  Raises:
    ValueError: for a non-positive size, a canvas smaller than a digit, shifts
      that would let the digits swap sides, or a test fraction outside (0, 1).

  Example:
    >>> data = make_multidigits(64, 32, seed=0)
    >>> data.train_images.shape, data.train_labels.shape
    ((64, 12, 12, 1), (64, 2))
  """
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

  _check_positive_int("num_train", num_train)
  _check_positive_int("num_test", num_test)
  _check_positive_int("canvas", canvas)
  if canvas < DIGIT_SIZE:
    raise ValueError(f"canvas must be at least the digit size {DIGIT_SIZE}, got {canvas}")
  if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
    raise ValueError(f"max_shift must be a non-negative integer, got {max_shift!r}")
  if 2 * max_shift > canvas - DIGIT_SIZE:
    raise ValueError(f"max_shift={max_shift} lets the right digit pass the left one on a "
                     f"{canvas}-pixel canvas: need 2 * max_shift <= canvas - {DIGIT_SIZE}")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")

  digits = load_digits()
  images = (digits.images / MAX_LEVEL).astype(np.float32)
  classes = digits.target.astype(np.int32)
  rng = np.random.default_rng(seed)
  order = rng.permutation(images.shape[0])
  num_test_digits = int(round(test_fraction * images.shape[0]))
  if num_test_digits < 2 or images.shape[0] - num_test_digits < 2:
    raise ValueError(f"test_fraction={test_fraction} leaves fewer than two digits in a pool")
  pools = order[num_test_digits:], order[:num_test_digits]
  out = []
  for pool, num in zip(pools, (num_train, num_test)):
    composed, picked = _compose(images[pool], num, canvas, max_shift, rng)
    out += [composed, classes[pool][picked]]
  return MultiDigits(*out)
