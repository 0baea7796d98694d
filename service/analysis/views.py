"""Turn analysis rows into what the API answers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from service.analysis.schemas import AnalysisOut, Finding, ModelIdentity, Region
from service.errors import NotFound
from service.inference.errors import ModelUnavailable
from service.inference.registry import ModelRegistry
from service.log_config import get_logger
from service.orm import Analysis, AnalysisStatus, Instance, Series, Study

log = get_logger(__name__)


def analysis_out(
    analysis: Analysis, instance: Instance, series: Series, study: Study, models: ModelRegistry
) -> AnalysisOut:
    """Return the API view of an analysis; every answer names the model that made it."""
    results: dict[str, Any] = analysis.results or {}
    return AnalysisOut(
        id=analysis.id,
        status=analysis.status,
        failure_reason=analysis.failure_reason,
        study_instance_uid=study.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        sop_instance_uid=instance.sop_instance_uid,
        model=ModelIdentity(
            name=analysis.model_name,
            version=analysis.model_version,
            sha256=analysis.model_sha256,
            disclaimer=results.get("disclaimer") or _disclaimer(models, analysis.model_name),
        ),
        methods=analysis.methods.split(","),
        trigger=analysis.trigger,
        attempts=analysis.attempts,
        created_at=analysis.created_at,
        started_at=analysis.started_at,
        finished_at=analysis.finished_at,
        findings=[Finding(**f) for f in results.get("findings", [])],
        regions=[Region(**r) for r in results.get("regions", [])],
        overlays=list(results.get("overlays", [])),
        outputs=dict(results.get("outputs", {})),
        timings_ms=dict(results.get("timings_ms", {})),
        bias=results.get("bias"),
        forwarding=results.get("forwarding"),
    )


def _disclaimer(models: ModelRegistry, name: str) -> str:
    try:
        return models.get(name).disclaimer
    except ModelUnavailable:
        return ""


def not_done_reason(analysis: Analysis, lacking: str) -> str:
    """Why an analysis that is not done has no ``lacking`` (images, anything to review): not
    yet, or never, with the failure's own reason."""
    if analysis.status is AnalysisStatus.FAILED:
        return f"analysis {analysis.id} failed, so it has {lacking}: {analysis.failure_reason}"
    return f"analysis {analysis.id} is {analysis.status.value}: it has {lacking} yet"


def no_overlay(analysis_id: uuid.UUID, made: Sequence[str], kind: str) -> NotFound:
    """The refusal of an overlay whose map is not in the results folder: one the analysis
    never made (naming those it did), or one it made whose file has gone (logged)."""
    if kind in made:
        log.error("analysis.map_missing", analysis_id=str(analysis_id), kind=kind)
        return NotFound(
            f"analysis {analysis_id}'s {kind} map is missing from the results folder; tell an admin"
        )
    return NotFound(
        f"analysis {analysis_id} has no {kind} overlay; it has: {', '.join(made) or 'none'}"
    )
