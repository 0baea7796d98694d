"""The cohort report's statistics on tiny arrays whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.audit.report_stats import (
    age_band,
    auroc,
    benjamini_hochberg,
    bootstrap_difference,
    expected_calibration_error,
    mann_whitney_p,
    median_iqr,
    prevalence_only_auroc,
    rate_difference,
    reliability_bins,
    wilson_interval,
)


def test_median_and_quartiles_of_known_values() -> None:
    spread = median_iqr([1, 2, 3, 4, 5, float("nan")])
    assert (spread.n, spread.median, spread.q1, spread.q3) == (5, 3.0, 2.0, 4.0)
    assert median_iqr([]).median is None


def test_wilson_interval_matches_the_textbook_and_stays_in_range() -> None:
    # 8 of 10: Wilson 95 % is 0.490–0.943 (Newcombe 1998, table I style check).
    interval = wilson_interval(8, 10)
    assert interval.estimate == 0.8
    assert interval.low == pytest.approx(0.4902, abs=1e-3)
    assert interval.high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 5).low == 0.0 and wilson_interval(5, 5).high == 1.0
    assert math.isnan(wilson_interval(0, 0).estimate)


def test_rate_difference_brackets_a_clear_difference_and_not_a_null_one() -> None:
    clear, p_clear = rate_difference(36, 40, 40, 200)
    assert clear.estimate == pytest.approx(0.9 - 0.2)
    assert clear.low > 0.5 and clear.excludes_zero() and p_clear < 1e-10
    null, p_null = rate_difference(10, 40, 50, 200)
    assert null.estimate == pytest.approx(0.0) and not null.excludes_zero() and p_null > 0.5
    with pytest.raises(ValueError, match="need cases"):
        rate_difference(1, 0, 1, 10)


def test_bootstrap_difference_of_medians_and_means() -> None:
    rng = np.random.default_rng(0)
    shifted = bootstrap_difference(rng.normal(1.0, 0.1, 60), rng.normal(0.0, 0.1, 60))
    assert shifted.estimate == pytest.approx(1.0, abs=0.05) and shifted.low > 0.9
    same = bootstrap_difference([1.0, 2.0, 3.0] * 10, [1.0, 2.0, 3.0] * 10, statistic="mean")
    assert same.estimate == 0.0 and same.low < 0 < same.high
    with pytest.raises(ValueError, match="median"):
        bootstrap_difference([1.0], [2.0], statistic="mode")


def test_mann_whitney_separates_shifted_samples_and_not_identical_ones() -> None:
    assert mann_whitney_p(np.arange(20) + 100.0, np.arange(20)) < 1e-6
    assert mann_whitney_p([0.5] * 10, [0.5] * 10) == 1.0


def test_benjamini_hochberg_by_hand() -> None:
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.5 → 0.04, 0.04, 0.04, 0.5 (step-up keeps q monotone).
    q = benjamini_hochberg([0.03, 0.5, 0.01, 0.02])
    np.testing.assert_allclose(q, [0.04, 0.5, 0.04, 0.04])
    assert benjamini_hochberg([]).size == 0
    assert benjamini_hochberg([0.9, 0.95]).max() <= 1.0


def test_auroc_and_ece_are_reused_from_training() -> None:
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0


def test_reliability_bins_count_and_average_each_bin() -> None:
    bins = reliability_bins([0.05, 0.05, 0.95, 1.0], [0, 1, 1, 1], bins=10)
    assert len(bins) == 10
    assert (bins[0].n, bins[0].mean_probability, bins[0].observed_rate) == (2, 0.05, 0.5)
    assert bins[9].n == 2 and bins[9].observed_rate == 1.0  # 1.0 falls in the last bin
    assert bins[5].n == 0 and bins[5].mean_probability is None


def test_prevalence_only_auroc_is_what_the_group_alone_gives() -> None:
    # The group decides the outcome: a perfect baseline.
    assert prevalence_only_auroc(["a", "a", "b", "b"], [1, 1, 0, 0]) == 1.0
    # The group says nothing: chance.
    assert prevalence_only_auroc(["a", "a", "b", "b"], [1, 0, 1, 0]) == 0.5
    # a: 2 of 3 positive, b: 0 of 1 → scores 2/3, 2/3, 2/3, 0; AUROC = (1 + 0.5·... ) by hand:
    # positives (2) both score 2/3; negatives score 2/3 (tie: 0.5) and 0 (win: 1) → 0.75.
    assert prevalence_only_auroc(["a", "a", "a", "b"], [1, 1, 0, 0]) == 0.75
    assert math.isnan(prevalence_only_auroc(["a", "b"], [1, 1]))


@pytest.mark.parametrize(
    ("age", "band"),
    [("039Y", "<40"), ("040Y", "40–59"), ("059Y", "40–59"), ("060Y", "60–79"),
     ("080Y", "≥80"), ("006M", "<40"), ("010W", "<40"), ("", "unknown"), ("63", "unknown"),
     ("063y", "60–79")],
)  # fmt: skip
def test_age_bands_from_dicom_age_strings(age: str, band: str) -> None:
    assert age_band(age) == band
