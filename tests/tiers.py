"""The test tiers: which parameters of a grid run in the README's fast command.

The fast tier (``pytest -m "not slow"``) keeps every method, the transformations, the docs'
examples and one RRG smoke run; a grid of parameters (task counts, dtypes, jit and eager, every
method of the registry through one API path) keeps a representative there, and the rest of the
grid is marked ``slow``, which ``.ci/run`` runs too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest


def grid(values: Iterable, fast: Sequence) -> list:
  """``values`` for ``pytest.mark.parametrize``: those in ``fast`` as they are, the others
  marked ``slow``.

  >>> [getattr(v, "marks", ()) and "slow" or v for v in grid((2, 3, 5), fast=(3,))]
  ['slow', 3, 'slow']
  """
  values = list(values)
  missing = [v for v in fast if v not in values]
  if missing:
    raise ValueError(f"fast values {missing} are not in the grid {values}")
  return [v if v in fast else pytest.param(v, marks=pytest.mark.slow) for v in values]
