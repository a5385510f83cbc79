"""Summary statistics over seeds and paired bootstrap confidence intervals.

* :func:`mean_std` -- mean and *sample* standard deviation (``ddof=1``) over seeds; no standard
  deviation for a single seed.
* :func:`format_mean_std` -- ``"0.123 ± 0.045"``, or ``"0.123"`` for one seed.
* :func:`paired_bootstrap` -- a two-level paired bootstrap of ``metric(B) - metric(A)``: seeds
  are resampled with replacement, then, within every drawn seed, the test studies; both methods
  see the same draws (the same seeds, the same studies), so the interval is that of the paired
  difference. The metric is recomputed from the resampled per-study outputs (CE from the labels,
  corpus BLEU from n-gram counts), not averaged from per-study scores where that differs.

Example:
  >>> mean_std([0.1, 0.3])
  (0.2, 0.1414..., 2)
  >>> format_mean_std([0.5])
  '0.500'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float | None, int]:
  """``(mean, sample std with ddof=1 or None for one value, n)``; NaNs are left out.

  Raises:
    ValueError: if ``values`` holds no finite number.
  """
  x = np.asarray(values, np.float64).ravel()
  x = x[~np.isnan(x)]
  if x.size == 0:
    raise ValueError("values must hold at least one number that is not NaN")
  std = float(np.std(x, ddof=1)) if x.size > 1 else None
  return float(np.mean(x)), std, int(x.size)


def format_mean_std(values: Sequence[float], digits: int = 3) -> str:
  """``mean ± sample std`` with ``digits`` decimals; the mean alone for one value."""
  mean, std, _ = mean_std(values)
  return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_interval(low: float, high: float, digits: int = 3) -> str:
  """``[low, high]`` with signs, e.g. ``[-0.012, +0.034]``."""
  return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def paired_bootstrap(per_seed_a: Sequence[Any], per_seed_b: Sequence[Any],
                     metrics: Callable[[Any, np.ndarray], dict[str, float]], *,
                     num_studies: int, num_samples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> dict[str, dict[str, float]]:
  """Paired two-level bootstrap of ``mean over seeds of metrics(b) - metrics(a)``.

  Args:
    per_seed_a: the per-study outputs of method A, one entry per seed.
    per_seed_b: those of method B, in the same seed order (paired with ``per_seed_a``).
    metrics: ``(outputs of one seed, study indices) -> {name: value}``, the metrics recomputed
      on the studies ``indices`` (with repetitions) of one seed's outputs.
    num_studies: number of test studies of every seed.
    num_samples: bootstrap resamples.
    level: confidence level of the percentile interval.
    seed: seed of the resampling.

  Returns:
    ``{name: {"diff": observed difference, "low": ..., "high": ...}}``; with one seed only the
    studies are resampled.

  Example:
    >>> a, b = np.zeros(20), np.ones(20)
    >>> ci = paired_bootstrap([a], [b], lambda x, i: {"m": float(x[i].mean())},
    ...                       num_studies=20, num_samples=100)
    >>> ci["m"]["diff"], ci["m"]["low"], ci["m"]["high"]
    (1.0, 1.0, 1.0)
  """
  if len(per_seed_a) != len(per_seed_b) or not per_seed_a:
    raise ValueError(f"per_seed_a and per_seed_b must be non-empty and paired, got "
                     f"{len(per_seed_a)} and {len(per_seed_b)} seeds")
  if num_studies < 1 or num_samples < 1:
    raise ValueError(f"num_studies and num_samples must be >= 1, got {num_studies}, "
                     f"{num_samples}")
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1), got {level}")
  everything = np.arange(num_studies)
  observed = _mean_difference(per_seed_a, per_seed_b, metrics,
                              [(s, everything) for s in range(len(per_seed_a))])
  rng = np.random.default_rng(seed)
  num_seeds = len(per_seed_a)
  draws = {name: [] for name in observed}
  for _ in range(num_samples):
    seeds = rng.integers(num_seeds, size=num_seeds) if num_seeds > 1 else [0]
    plan = [(s, rng.integers(num_studies, size=num_studies)) for s in seeds]
    for name, value in _mean_difference(per_seed_a, per_seed_b, metrics, plan).items():
      draws[name].append(value)
  tail = 100.0 * (1.0 - level) / 2.0
  out = {}
  for name, diff in observed.items():
    low, high = np.percentile(np.asarray(draws[name]), [tail, 100.0 - tail])
    out[name] = {"diff": diff, "low": float(low), "high": float(high)}
  return out


def _mean_difference(per_seed_a, per_seed_b, metrics, plan) -> dict[str, float]:
  """Mean over the plan's ``(seed, indices)`` of ``metrics(b) - metrics(a)``."""
  total: dict[str, float] = {}
  for s, indices in plan:
    ma, mb = metrics(per_seed_a[s], indices), metrics(per_seed_b[s], indices)
    for name in ma.keys() & mb.keys():
      total[name] = total.get(name, 0.0) + mb[name] - ma[name]
  return {name: value / len(plan) for name, value in total.items()}
