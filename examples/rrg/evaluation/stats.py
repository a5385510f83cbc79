"""Summary statistics over seeds and paired bootstrap confidence intervals.

* :func:`mean_std` -- mean and *sample* standard deviation (``ddof=1``) over seeds; no standard
  deviation for a single seed.
* :func:`format_mean_std` -- ``"0.123 ± 0.045"``, or ``"0.123"`` for one seed.
* :func:`paired_bootstrap` -- an interval for the paired difference ``metric(B) - metric(A)``,
  averaged over seeds, for the crossed design of the RRG runs (every seed is evaluated on the
  same test studies): a t interval whose variance adds the seed level (the spread of the
  per-seed differences) and the study level (a crossed bootstrap: one resample of the studies
  per replicate, applied to every seed, less the interaction the seed level already holds),
  with Satterthwaite's degrees of freedom. Both methods see the same studies, so the interval
  is that of the paired difference. The metric is recomputed from the resampled per-study
  outputs (CE from the labels, corpus BLEU from n-gram counts), not averaged from per-study
  scores where that differs.
* :func:`t_quantile` -- Student's t quantile (fractional degrees of freedom), without SciPy.

Example:
  >>> mean_std([0.1, 0.3])
  (0.2, 0.1414..., 2)
  >>> format_mean_std([0.5])
  '0.500'
"""

from __future__ import annotations

import math
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
  r"""Interval of ``mean over seeds of metrics(b) - metrics(a)``, seeds crossed with studies.

  Every seed of both methods is evaluated on the same ``J = num_studies`` test studies, so the
  studies are *crossed* with the ``S`` seeds, not nested in them. For a metric that is a mean
  over studies, the paired difference of seed ``s`` on study ``j`` follows the two-way random
  effects model

  .. math::

     d_{sj} = \mu + \alpha_s + \beta_j + \gamma_{sj},\qquad
     \hat\theta = \bar d_{\cdot\cdot},\qquad
     \operatorname{Var}\hat\theta = \frac{\sigma_\alpha^2}{S} + \frac{\sigma_\beta^2}{J}
       + \frac{\sigma_\gamma^2}{SJ},

  with a seed effect :math:`\alpha_s`, a study effect :math:`\beta_j` that every seed shares,
  and an interaction :math:`\gamma_{sj}`. Resampling studies independently inside each seed
  (the nested scheme) divides :math:`\sigma_\beta^2` by :math:`SJ` instead of :math:`J` and
  undercovers when studies dominate; a percentile interval over a handful of resampled seeds
  undercovers when seeds dominate (it has no :math:`t_{S-1}` tails and shrinks the seed
  variance by :math:`(S-1)/S`). The variance is therefore estimated by the method of moments
  of the two-way ANOVA (Searle et al.), :math:`(MS_A + MS_B - MS_E) / (SJ)`, written as three
  terms:

  * **seed level**, from the per-seed differences :math:`D_s` on the whole test set:
    :math:`v_A = \operatorname{var}_s(D_s) / S` (sample variance, ``ddof=1``), an unbiased
    estimate of :math:`\sigma_\alpha^2/S + \sigma_\gamma^2/(SJ)`, with :math:`S-1` degrees of
    freedom;
  * **study level**, from a *crossed* bootstrap: replicate ``b`` draws ONE resample
    :math:`I_b` of the ``J`` studies and applies it to every seed,
    :math:`D_{sb} = D_s(I_b)`, :math:`T_b = \frac1S\sum_s D_{sb}`, so the shared study effect
    moves every seed together and does not average away;
    :math:`v_B = \frac{J}{J-1}\operatorname{var}_b(T_b)` estimates
    :math:`\sigma_\beta^2/J + \sigma_\gamma^2/(SJ)` (:math:`J-1` degrees of freedom);
  * **interaction**, the part of :math:`v_B` already counted in :math:`v_A`: from the same
    replicates,
    :math:`v_E = \frac{J}{J-1}\,\frac{1}{S-1}\,\frac1S\sum_s\operatorname{var}_b(D_{sb}-T_b)`
    estimates :math:`\sigma_\gamma^2/(SJ)` (:math:`(S-1)(J-1)` degrees of freedom).

  For a mean over studies and ``num_samples`` :math:`\to\infty` these are exactly
  :math:`MS_A/(SJ)`, :math:`MS_B/(SJ)` and :math:`MS_E/(SJ)`; for a metric that is not a mean
  (CE-F1 from the labels, corpus BLEU from n-gram counts) the bootstrap supplies their
  linearised counterparts, recomputing the metric on the resampled studies. Then

  .. math::

     v = v_A + \max(v_B - v_E,\ 0),\qquad
     \nu = \frac{v^2}{v_A^2/(S-1) + v_B^2/(J-1) + v_E^2/((S-1)(J-1))},\qquad
     \hat\theta \pm t_{\nu,\,(1+\text{level})/2}\,\sqrt v,

  with Satterthwaite's degrees of freedom (at least 1; ``nu = S - 1`` when the study term is
  clipped to zero): ``nu`` is near ``S - 1`` (a :math:`t_4` quantile, 2.78, for 5 seeds) when seeds
  dominate and large (a normal quantile) when studies do. With one seed only the study level
  is left: :math:`v = \frac{J}{J-1}\operatorname{var}_b(T_b)`, ``nu = J - 1``; the interval
  is then conditional on that seed. Seeds are not resampled: their variance enters through
  :math:`v_A` and the t quantile, which a bootstrap over 5 seeds cannot give. Compared with the
  pigeonhole bootstrap (Owen 2007), which resamples seeds and studies independently and is
  mildly conservative (biased upward), this counts every component once and keeps the
  :math:`t` tails of the seed level.

  Args:
    per_seed_a: the per-study outputs of method A, one entry per seed.
    per_seed_b: those of method B, in the same seed order (paired with ``per_seed_a``).
    metrics: ``(outputs of one seed, study indices) -> {name: value}``, the metrics recomputed
      on the studies ``indices`` (with repetitions) of one seed's outputs; a name both methods
      return gets an interval.
    num_studies: number of test studies of every seed (the same studies for every seed).
    num_samples: crossed bootstrap replicates (each calls ``metrics`` twice per seed); the
      Monte Carlo error of the half-width is about ``1 / sqrt(2 num_samples)`` of it at most
      (2% at 1000), where the study level dominates.
    level: confidence level of the interval.
    seed: seed of the resampling.

  Returns:
    ``{name: {"diff": observed difference, "low": ..., "high": ...}}``, the interval
    symmetric about ``diff``.

  Raises:
    ValueError: if the seeds are not paired, ``num_studies`` or ``num_samples`` is below 1 or
      ``level`` is not in (0, 1).

  References:
    A. B. Owen (2007), The pigeonhole bootstrap, Annals of Applied Statistics 1(2), 386-411,
    https://doi.org/10.1214/07-AOAS122 (crossed random effects; why no bootstrap alone is
    exact, after McCullagh 2000).
    F. E. Satterthwaite (1946), An approximate distribution of estimates of variance
    components, Biometrics Bulletin 2(6), 110-114, https://doi.org/10.2307/3002019.
    S. R. Searle, G. Casella and C. E. McCulloch (1992), Variance Components, Wiley, chapter 4
    (the two-way crossed classification and its mean squares).

  Example:
    >>> a, b = np.zeros(20), np.ones(20)
    >>> ci = paired_bootstrap([a], [b], lambda x, i: {"m": float(x[i].mean())},
    ...                       num_studies=20, num_samples=100)
    >>> ci["m"]["diff"], ci["m"]["low"], ci["m"]["high"]
    (1.0, 1.0, 1.0)
    >>> rng = np.random.default_rng(0)
    >>> study = rng.normal(size=50)  # a per-study effect every seed shares
    >>> a = [rng.normal(size=50) for _ in range(3)]
    >>> b = [x + 0.3 + study + rng.normal(scale=0.1, size=50) for x in a]
    >>> ci = paired_bootstrap(a, b, lambda x, i: {"m": float(x[i].mean())}, num_studies=50)
    >>> ci["m"]["low"] < 0.3 < ci["m"]["high"], round(ci["m"]["high"] - ci["m"]["low"], 1)
    (True, 0.5)
  """
  if len(per_seed_a) != len(per_seed_b) or not per_seed_a:
    raise ValueError(f"per_seed_a and per_seed_b must be non-empty and paired, got "
                     f"{len(per_seed_a)} and {len(per_seed_b)} seeds")
  if num_studies < 1 or num_samples < 1:
    raise ValueError(f"num_studies and num_samples must be >= 1, got {num_studies}, "
                     f"{num_samples}")
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1), got {level}")
  num_seeds = len(per_seed_a)
  everything = np.arange(num_studies)
  names, observed = _differences(per_seed_a, per_seed_b, metrics, everything, None)  # (S, K)
  rng = np.random.default_rng(seed)
  draws = np.empty((num_samples, num_seeds, len(names)))  # D_sb, per metric
  for b in range(num_samples):
    draws[b] = _differences(per_seed_a, per_seed_b, metrics,
                            rng.integers(num_studies, size=num_studies), names)[1]
  correction = num_studies / (num_studies - 1) if num_studies > 1 else 1.0
  ddof = 1 if num_samples > 1 else 0
  replicates = draws.mean(1)  # T_b
  v_b = correction * np.var(replicates, axis=0, ddof=ddof)
  if num_seeds > 1:
    v_a = np.var(observed, axis=0, ddof=1) / num_seeds
    residual = np.var(draws - replicates[:, None], axis=0, ddof=ddof).mean(0)
    v_e = correction * residual / (num_seeds - 1)
  else:
    v_a = v_e = np.zeros(len(names))
  out = {}
  for k, name in enumerate(names):
    variance, dof = _combine(float(v_a[k]), float(v_b[k]), float(v_e[k]), num_seeds,
                             num_studies)
    diff = float(observed[:, k].mean())
    half = t_quantile((1.0 + level) / 2.0, dof) * math.sqrt(variance) if variance > 0 else 0.0
    out[name] = {"diff": diff, "low": diff - half, "high": diff + half}
  return out


def seed_t_interval(differences: Sequence[float], level: float = 0.95) -> dict[str, float]:
  """The seed level alone: ``mean(d) ± t_{n-1} s(d) / sqrt(n)`` over per-seed paired differences.

  This is the first term of :func:`paired_bootstrap`'s variance, so it is never wider than that
  interval; it is what can be computed from per-seed metrics when the per-study outputs are not
  kept (result files written before the crossed bootstrap). With one seed it is unbounded.

  References:
    Student (1908), the t interval: https://doi.org/10.1093/biomet/6.1.1

  Example:
    >>> ci = seed_t_interval([0.1, 0.3])
    >>> round(ci["diff"], 3), round(ci["low"], 3), round(ci["high"], 3)
    (0.2, -1.071, 1.471)
  """
  d = np.asarray(differences, np.float64)
  if d.size == 0:
    raise ValueError("differences must hold at least one per-seed difference")
  mean = float(d.mean())
  if d.size == 1:
    return {"diff": mean, "low": -float("inf"), "high": float("inf")}
  half = t_quantile(0.5 + level / 2.0, d.size - 1) * float(d.std(ddof=1)) / float(np.sqrt(d.size))
  return {"diff": mean, "low": float(mean - half), "high": float(mean + half)}


def t_quantile(p: float, df: float) -> float:
  r"""Quantile of Student's t distribution with ``df`` (> 0, may be fractional or ``inf``).

  Solves :math:`P(|T_\nu| > t) = 2(1 - p)` for :math:`p > 1/2` (and uses the symmetry
  :math:`t_{\nu,p} = -t_{\nu,1-p}`) with a safeguarded Newton iteration, where

  .. math::

     P(|T_\nu| > t) = I_{\nu/(\nu+t^2)}\!\left(\tfrac\nu2, \tfrac12\right),\qquad
     \frac{d}{dt}P(|T_\nu| > t) = -2\,\frac{\Gamma(\frac{\nu+1}2)}{\sqrt{\nu\pi}\,
       \Gamma(\frac\nu2)}\left(1+\frac{t^2}\nu\right)^{-\frac{\nu+1}2},

  :math:`I_x(a, b)` the regularised incomplete beta function, evaluated by its continued
  fraction (modified Lentz); ``df = inf`` is the normal distribution,
  :math:`P(|Z| > t) = \operatorname{erfc}(t/\sqrt2)`. The standard library only, so
  the ``examples`` extra needs no SciPy; it agrees with ``scipy.stats.t.ppf`` to about 1e-10
  (1e-9 beyond 1e5 degrees of freedom).

  Raises:
    ValueError: if ``p`` is not in (0, 1) or ``df`` is not positive.

  References:
    NIST Digital Library of Mathematical Functions, section 8.17 (incomplete beta function,
    its continued fraction 8.17.22), https://dlmf.nist.gov/8.17; M. Abramowitz and
    I. A. Stegun (1964), Handbook of Mathematical Functions, 26.7.1 (t from the incomplete
    beta function).

  Example:
    >>> round(t_quantile(0.975, 4), 4), round(t_quantile(0.975, float("inf")), 4)
    (2.7764, 1.96)
    >>> round(t_quantile(0.05, 1), 4)  # Cauchy: tan(pi (p - 1/2))
    -6.3138
  """
  if not 0.0 < p < 1.0:
    raise ValueError(f"p must be in (0, 1), got {p}")
  if not df > 0:
    raise ValueError(f"df must be positive, got {df}")
  if p < 0.5:
    return -t_quantile(1.0 - p, df)
  alpha = 2.0 * (1.0 - p)  # two-sided tail
  if alpha >= 1.0:
    return 0.0
  lo, hi = 0.0, 1.0
  while _t_tail(hi, df) > alpha:
    lo, hi = hi, 2.0 * hi
  t = 0.5 * (lo + hi)
  for _ in range(200):
    excess = _t_tail(t, df) - alpha
    if excess > 0:
      lo = t
    else:
      hi = t
    step = excess / (2.0 * _t_density(t, df))
    new = t + step if math.isfinite(step) else 0.5 * (lo + hi)
    if not lo < new < hi:
      new = 0.5 * (lo + hi)
    if abs(new - t) <= 1e-14 * max(1.0, t) or hi - lo <= 1e-15 * hi:
      return new
    t = new
  return t


def _t_tail(t: float, df: float) -> float:
  """``P(|T_df| > t)`` for ``t >= 0``."""
  if math.isinf(df):
    return math.erfc(t / math.sqrt(2.0))
  return _beta_regularized(0.5 * df, 0.5, df / (df + t * t), t * t / (df + t * t))


def _t_density(t: float, df: float) -> float:
  if math.isinf(df):
    return math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
  log = (math.lgamma(0.5 * (df + 1)) - math.lgamma(0.5 * df) - 0.5 * math.log(df * math.pi)
         - 0.5 * (df + 1) * math.log1p(t * t / df))
  return math.exp(log)


def _beta_regularized(a: float, b: float, x: float, y: float) -> float:
  """``I_x(a, b)`` with ``y = 1 - x`` given separately (no cancellation near ``x = 1``)."""
  if x <= 0.0:
    return 0.0
  if y <= 0.0:
    return 1.0
  log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
               + b * math.log(y))
  if x < (a + 1.0) / (a + b + 2.0):
    return math.exp(log_front) * _beta_fraction(a, b, x) / a
  return 1.0 - math.exp(log_front) * _beta_fraction(b, a, y) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
  """The continued fraction of ``I_x(a, b)`` (DLMF 8.17.22), by the modified Lentz method."""
  tiny = 1e-300
  c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
  d = 1.0 / (d if abs(d) > tiny else tiny)
  value = d
  for m in range(1, 100_000):
    for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                      -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
      d = 1.0 + numerator * d
      d = 1.0 / (d if abs(d) > tiny else tiny)
      c = 1.0 + numerator / c
      c = c if abs(c) > tiny else tiny
      value *= c * d
    if abs(c * d - 1.0) < 1e-16:
      break
  return value


def _differences(per_seed_a, per_seed_b, metrics, indices, names):
  """``(names, (S, K) array of metrics(b) - metrics(a) per seed on the studies indices)``.

  ``names=None`` (the full test set): the names every seed of both methods returns.
  """
  pairs = [(metrics(a, indices), metrics(b, indices)) for a, b in zip(per_seed_a, per_seed_b)]
  if names is None:
    names = [n for n in pairs[0][0] if all(n in ma and n in mb for ma, mb in pairs)]
  return names, np.array([[mb[n] - ma[n] for n in names] for ma, mb in pairs], np.float64)


def _combine(v_a: float, v_b: float, v_e: float, num_seeds: int,
             num_studies: int) -> tuple[float, float]:
  """``(variance, Satterthwaite degrees of freedom)`` of the crossed mean (see
  :func:`paired_bootstrap`)."""
  if num_seeds == 1:
    return v_b, max(num_studies - 1, 1)
  if v_b <= v_e:  # no study effect beyond the interaction: the seed level holds it all
    return v_a, num_seeds - 1
  variance = v_a + v_b - v_e
  denominator = (v_a ** 2 / (num_seeds - 1) + v_b ** 2 / (num_studies - 1)
                 + v_e ** 2 / ((num_seeds - 1) * (num_studies - 1)))
  return variance, max(variance ** 2 / denominator, 1.0)
