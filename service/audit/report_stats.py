"""The statistics of a cohort report (pure: numpy and scipy only).

Definitions (the report's "Methods" section repeats them):
- median and IQR: numpy's linear-interpolation quartiles of the values at hand;
- a rate's interval: Wilson's score interval (95 %), which stays inside 0..1 for small n;
- a group against the rest: the difference (group − rest) of a rate or of a median, with a
  95 % percentile bootstrap interval (group and rest resampled separately); its p-value comes
  from Fisher's exact test for rates and the two-sided Mann–Whitney U test for metrics;
- multiple groups: Benjamini–Hochberg q-values over every test of one report;
- AUROC: Mann–Whitney (ties count half), from ``service.training.classifier_eval``;
- calibration: reliability bins (equal width) and the ECE over the same bins;
- prevalence-only baseline: each case scored by its group's rate of the outcome (the same
  cases' rate: in-sample, so a slightly optimistic baseline); the AUROC of that score is what
  knowing the group alone would give.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import fisher_exact, mannwhitneyu, norm

from service.training.classifier_eval import auroc, expected_calibration_error

LEVEL = 0.95
BOOTSTRAP_SAMPLES = 2000
RELIABILITY_BINS = 10
AGE_BANDS = ("<40", "40–59", "60–79", "≥80")
UNKNOWN_AGE = "unknown"
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}

__all__ = [
    "Interval",
    "ReliabilityBin",
    "Spread",
    "age_band",
    "auroc",
    "benjamini_hochberg",
    "bootstrap_difference",
    "expected_calibration_error",
    "mann_whitney_p",
    "median_iqr",
    "prevalence_only_auroc",
    "rate_difference",
    "reliability_bins",
    "wilson_interval",
]


@dataclass(frozen=True)
class Spread:
    """Median and interquartile range of ``n`` values (None when there are none)."""

    n: int
    median: float | None
    q1: float | None
    q3: float | None


@dataclass(frozen=True)
class Interval:
    """An estimate with the bounds of its confidence interval."""

    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        """Return whether the whole interval lies on one side of 0."""
        return self.low > 0.0 or self.high < 0.0


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram: predicted probabilities in [low, high)."""

    low: float
    high: float
    n: int
    mean_probability: float | None
    observed_rate: float | None


def median_iqr(values: Sequence[float] | np.ndarray) -> Spread:
    """Return the median and quartiles of the finite values (None for each when empty)."""
    data = _finite(values)
    if data.size == 0:
        return Spread(0, None, None, None)
    q1, median, q3 = np.percentile(data, [25.0, 50.0, 75.0])
    return Spread(int(data.size), float(median), float(q1), float(q3))


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> Interval:
    """Return the rate successes/n with Wilson's score interval; nan bounds when n is 0."""
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan)
    z = float(norm.ppf(0.5 + level / 2.0))
    rate = successes / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(rate, max(0.0, centre - half), min(1.0, centre + half))


def rate_difference(
    group_successes: int,
    group_n: int,
    rest_successes: int,
    rest_n: int,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[Interval, float]:
    """Return the difference of two rates (group − rest) with its percentile bootstrap
    interval, and the two-sided p-value of Fisher's exact test.

    Resampling n yes/no cases with replacement draws the count of yeses from a binomial, so
    the bootstrap draws counts directly (the same distribution, without the arrays).
    """
    if group_n <= 0 or rest_n <= 0:
        raise ValueError("both the group and the rest need cases")
    rng = np.random.default_rng(seed)
    p_group, p_rest = group_successes / group_n, rest_successes / rest_n
    differences = (
        rng.binomial(group_n, p_group, samples) / group_n
        - rng.binomial(rest_n, p_rest, samples) / rest_n
    )
    low, high = _percentiles(differences, level)
    table = [
        [group_successes, group_n - group_successes],
        [rest_successes, rest_n - rest_successes],
    ]
    p_value = float(fisher_exact(table, alternative="two-sided")[1])
    return Interval(p_group - p_rest, low, high), min(1.0, p_value)


def bootstrap_difference(
    group: Sequence[float] | np.ndarray,
    rest: Sequence[float] | np.ndarray,
    *,
    statistic: str = "median",
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """Return statistic(group) − statistic(rest) ("median" or "mean") with a percentile
    bootstrap interval, each side resampled on its own."""
    a, b = _finite(group), _finite(rest)
    if a.size == 0 or b.size == 0:
        raise ValueError("both the group and the rest need values")
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', not {statistic!r}")
    reduce = np.median if statistic == "median" else np.mean
    rng = np.random.default_rng(seed)
    resampled_a = reduce(a[rng.integers(0, a.size, (samples, a.size))], axis=1)
    resampled_b = reduce(b[rng.integers(0, b.size, (samples, b.size))], axis=1)
    low, high = _percentiles(resampled_a - resampled_b, level)
    return Interval(float(reduce(a) - reduce(b)), low, high)


def mann_whitney_p(
    group: Sequence[float] | np.ndarray, rest: Sequence[float] | np.ndarray
) -> float:
    """Return the two-sided Mann–Whitney U p-value (1.0 when every value is the same)."""
    a, b = _finite(group), _finite(rest)
    if a.size == 0 or b.size == 0:
        raise ValueError("both the group and the rest need values")
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0  # nothing to rank: no evidence of a difference
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return Benjamini–Hochberg q-values (adjusted p-values, same order as given)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    # Step-up: each q is the smallest scaled p at or after its rank.
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(adjusted, 1.0)
    return q


def reliability_bins(
    probabilities: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    bins: int = RELIABILITY_BINS,
) -> list[ReliabilityBin]:
    """Return equal-width reliability bins: per bin the count, the mean probability and the
    observed rate of positives (None for an empty bin). 1.0 falls in the last bin."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append(
            ReliabilityBin(
                low=b / bins,
                high=(b + 1) / bins,
                n=n,
                mean_probability=float(p[inside].mean()) if n else None,
                observed_rate=float(y[inside].mean()) if n else None,
            )
        )
    return out


def prevalence_only_auroc(groups: Sequence[str], outcomes: Sequence[int] | np.ndarray) -> float:
    """Return the AUROC of scoring each case with its group's rate of the outcome (nan
    without both outcomes): how well group membership alone separates the cases."""
    y = np.asarray(outcomes, dtype=np.float64)
    names = np.asarray(groups, dtype=object)
    if y.size != names.size:
        raise ValueError("one group per outcome")
    scores = np.empty(y.size)
    for name in set(names.tolist()):
        inside = names == name
        scores[inside] = y[inside].mean()
    return auroc(scores, y)


def age_band(patient_age: str) -> str:
    """Return the age band of a DICOM age string ("063Y", "011M"); "unknown" if unreadable."""
    match = _AGE.match((patient_age or "").strip().upper())
    if match is None:
        return UNKNOWN_AGE
    years = int(match.group(1)) * _DAYS_PER_UNIT[match.group(2)] / 365.25
    if years < 40:
        return AGE_BANDS[0]
    if years < 60:
        return AGE_BANDS[1]
    if years < 80:
        return AGE_BANDS[2]
    return AGE_BANDS[3]


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64).ravel()
    return data[np.isfinite(data)]


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
