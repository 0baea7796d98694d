"""What a cohort report is made of: its filters, and one case per analysed image.

A case is one done analysis, with the attributes it is grouped by, what the model said, what
the per-image audit found, and (where a clinician reviewed it) the clinician's label.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from service.audit.report_stats import age_band

# The attributes a report groups by, in the order the report shows them.
GROUPING_ATTRIBUTES = (
    "Manufacturer",
    "ManufacturerModelName",
    "InstitutionName",
    "StationName",
    "ViewPosition",
    "PatientSex",
    "AgeBand",
    "BurnedInAnnotation",
)
BLANK = "(blank)"
# Per-image audit metrics summarised per group (peak_row/peak_col are positions: not here).
METRICS = (
    "relevant_share",
    "border_share",
    "burned_in_share",
    "outside_body_share",
    "top_outside_relevant_share",
    "counterfactual_change",
)
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ReportFilters:
    """Which analyses a report covers: done analyses analysed between two dates (UTC,
    inclusive), by one model, at one institution; None means any."""

    date_from: date | None = None
    date_to: date | None = None
    model: str | None = None
    site: str | None = None
    include_identifiers: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "model": self.model,
            "site": self.site,
            "include_identifiers": self.include_identifiers,
        }


@dataclass(frozen=True)
class Identifiers:
    """Who and what a case is; only an identified report (admins) shows these."""

    patient_id: str
    patient_name: str
    study_instance_uid: str
    sop_instance_uid: str


@dataclass
class ReportCase:
    analysis_id: uuid.UUID
    instance_pk: uuid.UUID
    analysed_at: datetime
    model_name: str
    model_version: str
    model_sha256: str
    attributes: dict[str, str]
    label: str | None  # the finding the analysis explains (its top finding)
    probability: float | None
    audited: bool  # the per-image bias audit ran (a Grad-CAM was made)
    flagged: bool
    flag_codes: tuple[str, ...]
    metrics: dict[str, float]
    identifiers: Identifiers | None = None
    boxes: tuple[str, ...] = ()  # burned-in marks the audit found ("row0,col0,row1,col1")
    positive: bool | None = None  # probability ≥ the model's operating point
    clinician: int | None = None  # 1: the clinician's finding is the model's; 0: it is not


def case_from_row(
    *,
    analysis_id: uuid.UUID,
    instance_pk: uuid.UUID,
    analysed_at: datetime,
    model: tuple[str, str, str],
    findings: list[dict[str, Any]] | None,
    bias: dict[str, Any] | None,
    equipment: tuple[str, str, str, str],
    view_position: str,
    patient_sex: str,
    patient_age: str,
    identifiers: Identifiers | None,
) -> ReportCase:
    """Return the case of one analysis row (findings and bias as the pipeline stored them)."""
    label, probability = top_finding(findings)
    bias = bias or {}
    metrics = {
        name: float(value)
        for name, value in (bias.get("metrics") or {}).items()
        if name in METRICS and isinstance(value, int | float)
    }
    counterfactual = bias.get("counterfactual") or {}
    if isinstance(counterfactual.get("change"), int | float):
        metrics["counterfactual_change"] = float(counterfactual["change"])
    burned_in_part = bias.get("burned_in") or {}
    burned_in = str(burned_in_part.get("attribute") or "")
    manufacturer, model_name, institution, station = equipment
    values = {
        "Manufacturer": manufacturer,
        "ManufacturerModelName": model_name,
        "InstitutionName": institution,
        "StationName": station,
        "ViewPosition": view_position,
        "PatientSex": patient_sex,
        "AgeBand": age_band(patient_age),
        "BurnedInAnnotation": burned_in.upper(),
    }
    return ReportCase(
        analysis_id=analysis_id,
        instance_pk=instance_pk,
        analysed_at=analysed_at,
        model_name=model[0],
        model_version=model[1],
        model_sha256=model[2],
        attributes={k: (v.strip() or BLANK) for k, v in values.items()},
        label=label,
        probability=probability,
        audited=bool(bias),
        flagged=bool(bias.get("flagged")),
        flag_codes=tuple(str(f.get("code", "")) for f in bias.get("flags") or []),
        metrics=metrics,
        identifiers=identifiers,
        boxes=tuple(str(b) for b in burned_in_part.get("boxes") or []),
    )


def top_finding(findings: list[dict[str, Any]] | None) -> tuple[str | None, float | None]:
    """Return the label and probability of the most probable finding (what the pipeline
    explains and audits), or (None, None) without findings."""
    best: tuple[str | None, float | None] = (None, None)
    for finding in findings or []:
        p = finding.get("probability")
        if isinstance(p, int | float) and (best[1] is None or p > best[1]):
            best = (str(finding.get("label", "")), float(p))
    return best


def clinician_label(model_label: str | None, decision: str, finding_label: str) -> int | None:
    """Return the clinician's label for the model's finding: 1 when the clinician's own
    finding is the model's finding, 0 when it is anything else ("no finding", "other
    finding", another label), None when they were uncertain (left out)."""
    if decision == "uncertain" or model_label is None:
        return None
    return 1 if finding_label == model_label else 0


def newest_per_image(cases: list[ReportCase]) -> list[ReportCase]:
    """Return one case per (image, model weights): the newest analysis, preferring one with
    a bias audit (the same image asked again with other methods is not a second case)."""
    best: dict[tuple[uuid.UUID, str], ReportCase] = {}
    for case in cases:
        key = (case.instance_pk, case.model_sha256)
        kept = best.get(key)
        if kept is None or (case.audited, case.analysed_at) > (kept.audited, kept.analysed_at):
            best[key] = case
    return sorted(best.values(), key=lambda c: (c.analysed_at, str(c.analysis_id)))
