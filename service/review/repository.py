"""Every query of the review pages and API: login sessions, decisions, the worklist."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session, aliased

from service.orm import (
    Analysis,
    AnalysisStatus,
    Instance,
    Patient,
    Review,
    Series,
    Study,
)

# --- decisions --------------------------------------------------------------------------------


def list_reviews(session: Session, analysis_id: uuid.UUID) -> list[Review]:
    """Return every decision on an analysis, oldest first (amendments included)."""
    return list(
        session.scalars(
            select(Review)
            .where(Review.analysis_pk == analysis_id)
            .order_by(Review.created_at, Review.id)
        )
    )


def get_review(session: Session, review_id: uuid.UUID) -> Review | None:
    return session.get(Review, review_id)


def is_amended(session: Session, review_id: uuid.UUID) -> bool:
    return bool(session.scalar(select(exists().where(Review.amends_pk == review_id))))


def current_reviews(session: Session, analysis_ids: Sequence[uuid.UUID]) -> list[Review]:
    """Return the decisions not replaced by an amendment, for these analyses, oldest first."""
    if not analysis_ids:
        return []
    newer = aliased(Review)
    return list(
        session.scalars(
            select(Review)
            .where(Review.analysis_pk.in_(analysis_ids))
            .where(~exists().where(newer.amends_pk == Review.id))
            .order_by(Review.created_at, Review.id)
        )
    )


# --- the worklist -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorklistCandidate:
    """One done analysis with what its worklist row shows (before review status)."""

    analysis_id: uuid.UUID
    model_name: str
    model_version: str
    analysed_at: datetime
    findings: list[dict[str, Any]]
    bias: dict[str, Any] | None
    patient_name: str
    patient_id: str
    study_instance_uid: str
    study_date: str
    study_time: str
    study_description: str
    modality: str
    view_position: str
    file_path: str
    rows: int
    columns: int


def worklist_candidates(
    session: Session,
    *,
    date_from: str | None,
    date_to: str | None,
    modality: str | None,
    model: str | None,
) -> list[WorklistCandidate]:
    """Return the done analyses that pass the worklist's database-side filters.

    Study dates are DICOM DA strings (YYYYMMDD), so string comparison orders them. Findings
    and the bias flag live in the results JSON; only those two parts are read.
    """
    query: Select[Any] = (
        select(
            Analysis.id,
            Analysis.model_name,
            Analysis.model_version,
            Analysis.finished_at,
            Analysis.created_at,
            Analysis.results["findings"],
            Analysis.results["bias"],
            Patient.patient_name,
            Patient.patient_id,
            Study.study_instance_uid,
            Study.study_date,
            Study.study_time,
            Study.study_description,
            Series.modality,
            Instance.view_position,
            Instance.file_path,
            Instance.rows,
            Instance.columns,
        )
        .join(Instance, Analysis.instance_pk == Instance.id)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .join(Patient, Study.patient_pk == Patient.id)
        .where(Analysis.status == AnalysisStatus.DONE)
    )
    if date_from:
        query = query.where(Study.study_date >= date_from)
    if date_to:
        query = query.where(Study.study_date <= date_to, Study.study_date != "")
    if modality:
        query = query.where(Series.modality == modality)
    if model:
        query = query.where(Analysis.model_name == model)
    return [
        WorklistCandidate(
            analysis_id=row[0],
            model_name=row[1],
            model_version=row[2],
            analysed_at=row[3] or row[4],
            findings=list(row[5] or []),
            bias=row[6],
            patient_name=row[7],
            patient_id=row[8],
            study_instance_uid=row[9],
            study_date=row[10],
            study_time=row[11],
            study_description=row[12],
            modality=row[13],
            view_position=row[14],
            file_path=row[15],
            rows=row[16] or 0,
            columns=row[17] or 0,
        )
        for row in session.execute(query)
    ]


def worklist_choices(session: Session) -> tuple[list[str], list[str]]:
    """Return the modalities and model names that done analyses have, for the filters."""
    done = Analysis.status == AnalysisStatus.DONE
    modalities = session.scalars(
        select(Series.modality)
        .distinct()
        .join(Instance, Instance.series_pk == Series.id)
        .join(Analysis, Analysis.instance_pk == Instance.id)
        .where(done)
        .order_by(Series.modality)
    )
    models = session.scalars(
        select(Analysis.model_name).distinct().where(done).order_by(Analysis.model_name)
    )
    return [m for m in modalities if m], list(models)


def count_pending(session: Session) -> int:
    """Return how many analyses are queued or running (not in the worklist yet)."""
    waiting = Analysis.status.in_((AnalysisStatus.QUEUED, AnalysisStatus.RUNNING))
    return session.scalar(select(func.count()).select_from(Analysis).where(waiting)) or 0


def study_analyses(session: Session, study_pk: uuid.UUID) -> list[tuple[Analysis, Instance]]:
    """Return the done analyses of a study with their images (the study's other images)."""
    rows = session.execute(
        select(Analysis, Instance)
        .join(Instance, Analysis.instance_pk == Instance.id)
        .where(Analysis.study_pk == study_pk, Analysis.status == AnalysisStatus.DONE)
        .order_by(Instance.instance_number, Analysis.created_at)
    ).all()
    return [(a, i) for a, i in rows]
