"""The fast/slow split of parameter grids (``tests/tiers.py``)."""

import pytest

from tests.tiers import grid


def test_grid_marks_all_but_the_fast_values_slow():
  values = grid([2, 3, 5, 8], fast=[3, 8])
  assert [v for v in values if not hasattr(v, "marks")] == [3, 8]
  slow = [v for v in values if hasattr(v, "marks")]
  assert [v.values for v in slow] == [(2,), (5,)]
  assert all([m.name for m in v.marks] == ["slow"] for v in slow)


def test_grid_refuses_fast_values_outside_it():
  with pytest.raises(ValueError, match=r"\[4\]"):
    grid([2, 3], fast=[4])
