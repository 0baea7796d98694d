"""Every query of the bias audit: a report's cases, clinicians' decisions, reports and sanity
checks.

A report over thousands of analyses reads them in one SELECT (analyses joined to their image,
series, study and patient; only the findings and bias parts of the results JSON), and the
clinicians' current decisions in a second one with the same filters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session, aliased

from service.audit.report_cases import Identifiers, ReportCase, ReportFilters, case_from_row
from service.orm import (
    Analysis,
    AnalysisStatus,
    AuditReport,
    Instance,
    Patient,
    Review,
    SanityCheck,
    Series,
    Study,
)

_Ts = TypeVarTuple("_Ts")


def _filtered(query: Select[*_Ts], filters: ReportFilters) -> Select[*_Ts]:
    """Return the query joined to the archive and narrowed to the report's analyses."""
    query = (
        query.join(Instance, Analysis.instance_pk == Instance.id)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .join(Patient, Study.patient_pk == Patient.id)
        .where(Analysis.status == AnalysisStatus.DONE)
    )
    if filters.date_from is not None:
        query = query.where(Analysis.created_at >= _start_of(filters.date_from))
    if filters.date_to is not None and filters.date_to < date.max:  # date.max: no end
        # Inclusive: everything before the start of the next day.
        query = query.where(Analysis.created_at < _start_of(filters.date_to + timedelta(days=1)))
    if filters.model is not None:
        query = query.where(Analysis.model_name == filters.model)
    if filters.site is not None:
        query = query.where(Series.institution_name == filters.site)
    return query


def report_cases(session: Session, filters: ReportFilters) -> list[ReportCase]:
    """Return every done analysis the filters select, as report cases (oldest first)."""
    columns: list[Any] = [
        Analysis.id,
        Analysis.instance_pk,
        Analysis.created_at,
        Analysis.model_name,
        Analysis.model_version,
        Analysis.model_sha256,
        Analysis.results["findings"],
        Analysis.results["bias"],
        Series.manufacturer,
        Series.manufacturer_model_name,
        Series.institution_name,
        Series.station_name,
        Instance.view_position,
        Patient.patient_sex,
        Study.patient_age,
    ]
    if filters.include_identifiers:
        columns += [
            Patient.patient_id,
            Patient.patient_name,
            Study.study_instance_uid,
            Instance.sop_instance_uid,
        ]
    query = _filtered(select(*columns), filters).order_by(Analysis.created_at, Analysis.id)
    return [
        case_from_row(
            analysis_id=row[0],
            instance_pk=row[1],
            analysed_at=row[2],
            model=(row[3], row[4], row[5]),
            findings=row[6],
            bias=row[7],
            equipment=(row[8], row[9], row[10], row[11]),
            view_position=row[12],
            patient_sex=row[13],
            patient_age=row[14],
            identifiers=Identifiers(*row[15:19]) if filters.include_identifiers else None,
        )
        for row in session.execute(query)
    ]


def current_decisions(
    session: Session, filters: ReportFilters
) -> list[tuple[uuid.UUID, str, str, datetime]]:
    """Return (analysis id, decision, clinician's finding label, when) of every current
    decision (not replaced by an amendment) on the report's analyses, oldest first."""
    newer = aliased(Review)
    query = (
        select(Review.analysis_pk, Review.decision, Review.finding_label, Review.created_at)
        .join(Analysis, Review.analysis_pk == Analysis.id)
        .where(~exists().where(newer.amends_pk == Review.id))
        .order_by(Review.created_at, Review.id)
    )
    return [
        (row[0], str(getattr(row[1], "value", row[1])), row[2], row[3])
        for row in session.execute(_filtered(query, filters))
    ]


def model_names(session: Session) -> list[str]:
    """Return the names of the models that have analyses."""
    return list(
        session.scalars(select(Analysis.model_name).distinct().order_by(Analysis.model_name))
    )


def has_analyses_by(session: Session, model_name: str) -> bool:
    return bool(session.scalar(select(exists().where(Analysis.model_name == model_name))))


# --- reports ----------------------------------------------------------------------------------


def add_report(session: Session, report: AuditReport) -> AuditReport:
    session.add(report)
    session.flush()
    return report


def get_report(session: Session, report_id: uuid.UUID) -> AuditReport | None:
    return session.get(AuditReport, report_id)


def list_reports(session: Session, limit: int = 200) -> Sequence[AuditReport]:
    """Return the newest reports first."""
    return session.scalars(
        select(AuditReport).order_by(AuditReport.created_at.desc(), AuditReport.id).limit(limit)
    ).all()


# --- sanity checks ----------------------------------------------------------------------------


def add_sanity_check(session: Session, check: SanityCheck) -> SanityCheck:
    session.add(check)
    session.flush()
    return check


def list_sanity_checks(
    session: Session, sha256: str | None = None, limit: int = 200
) -> Sequence[SanityCheck]:
    """Return stored sanity checks, newest first (of one weights sha256 if given)."""
    query = select(SanityCheck).order_by(SanityCheck.created_at.desc(), SanityCheck.id)
    if sha256 is not None:
        query = query.where(SanityCheck.model_sha256 == sha256)
    return session.scalars(query.limit(limit)).all()


def _start_of(day: Any) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
