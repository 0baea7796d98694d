"""Analyses: request them (idempotently), claim and finish them (exactly once).

Services never commit: the caller's session scope does, and jobs are enqueued only after.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.analysis import repository
from service.analysis.methods import ExplanationMethod, methods_key
from service.analysis.rules import ArrivalRules, why_not_analysable, why_not_on_arrival
from service.dicom import repository as archive
from service.errors import BadRequest, NotFound
from service.inference.registry import LoadedModel
from service.orm import Analysis, AnalysisStatus, Instance, Study
from service.orm.base import utcnow


@dataclass(frozen=True)
class Requested:
    """One image's answer to a request: its analysis (new or existing), or why it has none."""

    sop_instance_uid: str
    analysis: Analysis | None = None
    created: bool = False
    skipped: str = ""

    @property
    def needs_enqueue(self) -> bool:
        return self.analysis is not None and self.analysis.status is AnalysisStatus.QUEUED


def request_for_study(
    *,
    session: Session,
    study_instance_uid: str,
    model: LoadedModel,
    methods: tuple[ExplanationMethod, ...],
    requested_by: str,
) -> list[Requested]:
    """Return an analysis for every analysable image of a study, creating those not yet asked.

    Raises NotFound for an unknown study and BadRequest when no image can be analysed.
    """
    study = archive.get_study(session, study_instance_uid)
    if study is None:
        raise NotFound(f"no study {study_instance_uid} in the archive")
    answers: list[Requested] = []
    for instance, facts in repository.study_images(session, study):
        reason = why_not_analysable(facts)
        if reason:
            answers.append(Requested(instance.sop_instance_uid, skipped=reason))
            continue
        answers.append(
            _request_one(session, instance, study, model, methods, requested_by, "request")
        )
    if not any(a.analysis for a in answers):
        reasons = "; ".join(f"{a.sop_instance_uid}: {a.skipped}" for a in answers)
        raise BadRequest(f"no image in this study can be analysed ({reasons or 'no images'})")
    return answers


def request_on_arrival(
    *,
    session: Session,
    sop_instance_uid: str,
    model: LoadedModel,
    methods: tuple[ExplanationMethod, ...],
    rules: ArrivalRules,
) -> Requested:
    """Return the analysis of a newly stored image when it matches the arrival rules."""
    found = repository.instance_with_facts(session, sop_instance_uid)
    if found is None:
        return Requested(sop_instance_uid, skipped="not in the archive")
    instance, study, facts = found
    reason = why_not_on_arrival(facts, rules)
    if reason:
        return Requested(sop_instance_uid, skipped=reason)
    return _request_one(session, instance, study, model, methods, "arrival-rules", "arrival")


def _request_one(
    session: Session,
    instance: Instance,
    study: Study,
    model: LoadedModel,
    methods: tuple[ExplanationMethod, ...],
    requested_by: str,
    trigger: str,
) -> Requested:
    key = methods_key(methods)
    existing = repository.find(
        session, instance_pk=instance.id, model_sha256=model.sha256, methods=key
    )
    if existing is not None:
        if existing.status is AnalysisStatus.FAILED:
            # Asking again retries a failed analysis (the image or the model may be fixed).
            existing.status = AnalysisStatus.QUEUED
            existing.failure_reason = None
        return Requested(instance.sop_instance_uid, analysis=existing)
    analysis = Analysis(
        instance_pk=instance.id,
        study_pk=study.id,
        model_name=model.name,
        model_version=model.version,
        model_sha256=model.sha256,
        methods=key,
        status=AnalysisStatus.QUEUED,
        requested_by=requested_by,
        trigger=trigger,
    )
    try:
        with session.begin_nested():
            session.add(analysis)
    except IntegrityError:
        # Another request created the same analysis a moment ago: answer with that one.
        raced = repository.find(
            session, instance_pk=instance.id, model_sha256=model.sha256, methods=key
        )
        if raced is None:
            raise
        return Requested(instance.sop_instance_uid, analysis=raced)
    return Requested(instance.sop_instance_uid, analysis=analysis, created=True)


def claim(*, session: Session, analysis_id: uuid.UUID) -> Analysis | None:
    """Mark an analysis running and return it; None when it is finished (or unknown).

    A job redelivered after its worker died finds the analysis still running and claims it
    again; one redelivered after it finished finds it done and does nothing.
    """
    analysis = repository.get(session, analysis_id, for_update=True)
    if analysis is None or analysis.status in (AnalysisStatus.DONE, AnalysisStatus.FAILED):
        return None
    analysis.status = AnalysisStatus.RUNNING
    analysis.attempts += 1
    analysis.started_at = utcnow()
    return analysis


def finish(
    *,
    session: Session,
    analysis_id: uuid.UUID,
    results: dict[str, Any] | None,
    failure_reason: str | None,
) -> bool:
    """Record an analysis's results or failure; return False if another run finished it first."""
    analysis = repository.get(session, analysis_id, for_update=True)
    if analysis is None or analysis.status in (AnalysisStatus.DONE, AnalysisStatus.FAILED):
        return False
    analysis.status = AnalysisStatus.FAILED if failure_reason else AnalysisStatus.DONE
    analysis.failure_reason = failure_reason
    analysis.results = results
    analysis.finished_at = utcnow()
    return True


def fail_unqueued(*, session: Session, analysis_id: uuid.UUID, reason: str) -> bool:
    """Record a queued analysis whose job could not be queued as failed (asking again
    retries it); return False for one a worker took meanwhile, or that finished."""
    analysis = repository.get(session, analysis_id, for_update=True)
    if analysis is None or analysis.status is not AnalysisStatus.QUEUED:
        return False
    analysis.status = AnalysisStatus.FAILED
    analysis.failure_reason = reason
    analysis.finished_at = utcnow()
    return True
