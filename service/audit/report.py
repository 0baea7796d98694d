"""A cohort report's numbers, from its cases (no database, no files): JSON-ready dicts.

Per group of each attribute: n, the flag rate (all audited cases, and among the model's
positive calls), median and IQR of each metric, AUROC and calibration against clinicians'
labels where there are reviews, and a prevalence-only baseline per attribute. A group differs
from the rest ("highlighted") only when it has at least ``MIN_GROUP`` cases, the test's
Benjamini–Hochberg q-value over all of the report's tests is below ``FDR``, and the bootstrap
interval of the difference excludes 0. Smaller groups are shown but not tested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.audit.report_cases import GROUPING_ATTRIBUTES, METRICS, ReportCase
from service.audit.report_stats import (
    Interval,
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
from service.training.classifier_eval import auroc_estimate

MIN_GROUP = 30
FDR = 0.05
# Metric medians tested group against rest (the shares that say where a heatmap looked).
TESTED_METRICS = ("relevant_share", "border_share", "burned_in_share", "outside_body_share")
METRIC_BOOTSTRAP_SAMPLES = 1000  # medians cost more to resample than rates
GALLERY_SIZE = 12
HISTOGRAM_BINS = 20
NO_CASES = "No analyses match these filters."
NO_REVIEWS = "No reviews yet: AUROC and calibration against clinicians need reviewed analyses."

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelInfo:
    """A model in the report and the operating point its positive calls use."""

    name: str
    version: str
    sha256: str
    threshold: float
    threshold_source: str


@dataclass
class _Test:
    attribute: str
    value: str
    outcome: str
    n: int
    interval: Interval
    p: float
    q: float = 1.0

    @property
    def highlighted(self) -> bool:
        return self.n >= MIN_GROUP and self.q < FDR and self.interval.excludes_zero()

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "n": self.n,
            "difference": _num(self.interval.estimate),
            "ci_low": _num(self.interval.low),
            "ci_high": _num(self.interval.high),
            "p": _num(self.p),
            "q": _num(self.q),
            "highlighted": self.highlighted,
        }


def assign_calls(cases: Iterable[ReportCase], models: Mapping[str, ModelInfo]) -> None:
    """Mark each case's positive call: probability ≥ its model's operating point."""
    for case in cases:
        model = models.get(case.model_sha256)
        if model is not None and case.probability is not None:
            case.positive = case.probability >= model.threshold


def assign_clinician_labels(cases: Iterable[ReportCase], labels: Mapping[Any, int]) -> None:
    """Give each case its clinician label from (analysis id → 1/0) pairs; others get None."""
    for case in cases:
        case.clinician = labels.get(case.analysis_id)


def build_report(
    cases: list[ReportCase],
    *,
    models: list[ModelInfo],
    attributes: Sequence[str] = GROUPING_ATTRIBUTES,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Return the report's numbers: summary, metric distributions, per-attribute groups with
    their tests, the highlights and the gallery's cases (as indices into ``cases``).

    ``attributes`` are keys of each case's ``attributes`` (a benchmark may add its own, such
    as a phantom's ground truth)."""
    progress = on_progress or (lambda _done, _total: None)
    total = len(attributes) + 1
    if not cases:
        progress(total, total)
        return {"empty": True, "message": NO_CASES, "models": [asdict(m) for m in models]}
    report: dict[str, Any] = {
        "empty": False,
        "message": None,
        "models": [asdict(m) for m in models],
        "summary": summary(cases),
        "metrics": metric_distributions(cases),
    }
    progress(1, total)
    sections: list[dict[str, Any]] = []
    tests: list[_Test] = []
    for done, attribute in enumerate(attributes, start=2):
        section, found = attribute_section(cases, attribute, seed=len(tests))
        sections.append(section)
        tests.extend(found)
        progress(done, total)
    for test, q in zip(tests, benjamini_hochberg([t.p for t in tests]), strict=True):
        test.q = float(q)
    for section in sections:
        for group in section["groups"]:
            group["tests"] = [t.as_json() for t in group.pop("_tests")]
            group["highlighted"] = any(t["highlighted"] for t in group["tests"])
    report["attributes"] = sections
    report["tests"] = len(tests)
    report["highlights"] = [
        {"attribute": t.attribute, "group": t.value, **t.as_json()}
        for t in sorted(tests, key=lambda t: t.q)
        if t.highlighted
    ]
    report["gallery"] = most_flagged(cases)
    return report


def summary(cases: list[ReportCase]) -> dict[str, Any]:
    """Return the cohort's headline numbers and its agreement with clinicians."""
    out = _counts(cases)
    reviewed = [c for c in cases if c.clinician is not None and c.probability is not None]
    out["clinicians"] = clinician_agreement(reviewed)
    out["analysed_from"] = min(c.analysed_at for c in cases).isoformat()
    out["analysed_to"] = max(c.analysed_at for c in cases).isoformat()
    return out


def clinician_agreement(reviewed: list[ReportCase]) -> dict[str, Any]:
    """Return AUROC (with a bootstrap CI) and calibration of the model's probability against
    the clinicians' labels, or a note saying why there are none."""
    out: dict[str, Any] = {"reviewed": len(reviewed), "note": None}
    if not reviewed:
        out["note"] = NO_REVIEWS
        return out
    p = np.array([c.probability for c in reviewed], dtype=np.float64)
    y = np.array([c.clinician for c in reviewed], dtype=np.float64)
    out["positives"] = int(y.sum())
    out["ece"] = _num(expected_calibration_error(p, y, bins=10))
    out["reliability"] = [asdict(b) for b in reliability_bins(p, y)]
    if 0 < y.sum() < y.size:
        estimate = auroc_estimate(p, y)
        out["auroc"] = {"estimate": estimate.mean, "ci_low": estimate.low, "ci_high": estimate.high}
    else:
        out["auroc"] = None
        out["note"] = "AUROC needs reviewed cases with and without the finding."
    return out


def metric_distributions(cases: list[ReportCase]) -> dict[str, Any]:
    """Return each metric's median, IQR and histogram over the audited cases."""
    out: dict[str, Any] = {}
    for name in METRICS:
        values = np.array([c.metrics[name] for c in cases if name in c.metrics])
        low = -1.0 if name == "counterfactual_change" else 0.0
        counts, edges = np.histogram(np.clip(values, low, 1.0), HISTOGRAM_BINS, (low, 1.0))
        out[name] = {
            **asdict(median_iqr(values)),
            "histogram": {"counts": counts.tolist(), "edges": [round(e, 4) for e in edges]},
        }
    return out


def attribute_section(
    cases: list[ReportCase], attribute: str, *, seed: int
) -> tuple[dict[str, Any], list[_Test]]:
    """Return one attribute's groups (largest first) with their tests, and the tests."""
    values = np.array([c.attributes.get(attribute, "") for c in cases], dtype=object)
    names = sorted(set(values.tolist()), key=lambda v: (-int((values == v).sum()), v))
    groups: list[dict[str, Any]] = []
    tests: list[_Test] = []
    for name in names:
        inside = values == name
        members = [c for c, keep in zip(cases, inside, strict=True) if keep]
        rest = [c for c, keep in zip(cases, inside, strict=True) if not keep]
        group = _counts(members)
        group["value"] = name
        reviewed = [c for c in members if c.clinician is not None and c.probability is not None]
        group["reviewed"] = len(reviewed)
        group["auroc"] = _auroc_of(reviewed)
        group["ece"] = (
            _num(
                expected_calibration_error(
                    np.array([c.probability for c in reviewed], dtype=np.float64),
                    np.array([c.clinician for c in reviewed], dtype=np.float64),
                    bins=10,
                )
            )
            if reviewed
            else None
        )
        group["metrics"] = {
            m: asdict(median_iqr([c.metrics[m] for c in members if m in c.metrics]))
            for m in METRICS
        }
        found = group_tests(attribute, name, members, rest, seed=seed + len(tests))
        group["_tests"] = found
        tests.extend(found)
        groups.append(group)
    return {
        "attribute": attribute,
        "groups": groups,
        "baseline": baselines(cases, attribute),
    }, tests


def group_tests(
    attribute: str, value: str, members: list[ReportCase], rest: list[ReportCase], *, seed: int
) -> list[_Test]:
    """Return the group-against-rest tests of one group (none below ``MIN_GROUP`` cases)."""
    tests: list[_Test] = []
    for outcome, keep in (("flag_rate", _audited), ("flag_rate_positive", _audited_positive)):
        g, r = [c for c in members if keep(c)], [c for c in rest if keep(c)]
        if len(g) >= MIN_GROUP and r:
            interval, p = rate_difference(
                sum(c.flagged for c in g), len(g), sum(c.flagged for c in r), len(r),
                seed=seed + len(tests),
            )  # fmt: skip
            tests.append(_Test(attribute, value, outcome, len(g), interval, p))
    for metric in TESTED_METRICS:
        g_values = [c.metrics[metric] for c in members if metric in c.metrics]
        r_values = [c.metrics[metric] for c in rest if metric in c.metrics]
        if len(g_values) >= MIN_GROUP and r_values:
            interval = bootstrap_difference(
                g_values, r_values, samples=METRIC_BOOTSTRAP_SAMPLES, seed=seed + len(tests)
            )
            p = mann_whitney_p(g_values, r_values)
            tests.append(_Test(attribute, value, f"median {metric}", len(g_values), interval, p))
    return tests


def baselines(cases: list[ReportCase], attribute: str) -> dict[str, Any]:
    """Return the prevalence-only AUROCs of an attribute: how well its groups alone predict
    the clinicians' labels, and the model's positive calls."""
    reviewed = [c for c in cases if c.clinician is not None]
    called = [c for c in cases if c.positive is not None]
    return {
        "clinician_label": _num(
            prevalence_only_auroc(
                [c.attributes.get(attribute, "") for c in reviewed],
                [int(c.clinician or 0) for c in reviewed],
            )
        )
        if reviewed
        else None,
        "positive_call": _num(
            prevalence_only_auroc(
                [c.attributes.get(attribute, "") for c in called],
                [int(bool(c.positive)) for c in called],
            )
        )
        if called
        else None,
    }


def most_flagged(cases: list[ReportCase], size: int = GALLERY_SIZE) -> list[int]:
    """Return the indices of the most flagged cases: most flags first, then the largest
    counterfactual change, then the least heatmap mass in the relevant region."""
    flagged = [i for i, c in enumerate(cases) if c.flagged]

    def strength(i: int) -> tuple[int, float, float]:
        c = cases[i]
        return (
            len(c.flag_codes),
            c.metrics.get("counterfactual_change", 0.0),
            -c.metrics.get("relevant_share", 1.0),
        )

    return sorted(flagged, key=strength, reverse=True)[:size]


def _counts(cases: list[ReportCase]) -> dict[str, Any]:
    audited = [c for c in cases if c.audited]
    positives = [c for c in audited if c.positive]
    flagged = sum(c.flagged for c in audited)
    flagged_positive = sum(c.flagged for c in positives)
    rate = wilson_interval(flagged, len(audited))
    rate_positive = wilson_interval(flagged_positive, len(positives))
    return {
        "n": len(cases),
        "audited": len(audited),
        "flagged": flagged,
        "flag_rate": _interval(rate),
        "positive_calls": sum(1 for c in cases if c.positive),
        "flagged_positive": flagged_positive,
        "flag_rate_positive": _interval(rate_positive),
        "flag_codes": _code_counts(audited),
    }


def _code_counts(cases: list[ReportCase]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for case in cases:
        for code in set(case.flag_codes):
            counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items()))


def _auroc_of(reviewed: list[ReportCase]) -> float | None:
    y = [c.clinician for c in reviewed]
    if not reviewed or min(y) == max(y):  # type: ignore[type-var]
        return None
    return _num(auroc(np.array([c.probability for c in reviewed]), np.array(y)))


def _audited(case: ReportCase) -> bool:
    return case.audited


def _audited_positive(case: ReportCase) -> bool:
    return case.audited and bool(case.positive)


def _interval(interval: Interval) -> dict[str, float | None]:
    return {
        "rate": _num(interval.estimate),
        "low": _num(interval.low),
        "high": _num(interval.high),
    }


def _num(value: float | None) -> float | None:
    """Return a JSON-safe number: None for nan, rounded to 4 decimals."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 4)
