"""The analysis job: claim, run the pipeline, finish. One function for threads and Celery."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from service.analysis import repository
from service.analysis import service as analysis_service
from service.analysis.methods import ExplanationMethod, parse_methods
from service.analysis.runtime import AnalysisServices
from service.db import session_scope
from service.dicom.archive import is_disk_full
from service.log_config import get_logger

log = get_logger(__name__)


class AnalysisFailed(Exception):
    """The image cannot be analysed; the reason is recorded on the analysis and shown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Job:
    """What one run of an analysis needs, read when it is claimed."""

    analysis_id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str
    model_sha256: str
    methods: tuple[ExplanationMethod, ...]
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    image_path: Path


def run_analysis(analysis_id: uuid.UUID, services: AnalysisServices) -> None:
    """Run one analysis to its end; a finished one (a redelivered job) is left as it is."""
    from service.analysis.pipeline import analyse  # the pipeline imports torch: load lazily

    job = _claim(analysis_id, services)
    if job is None:
        log.info("analysis.already_finished", analysis_id=str(analysis_id))
        return
    log.info("analysis.started", analysis_id=str(analysis_id))
    results: dict[str, object] | None = None
    failure: str | None = None
    try:
        results = analyse(job, services)
    except AnalysisFailed as exc:
        failure = exc.reason
    except Exception as exc:
        if is_disk_full(exc):
            log.error("analysis.disk_full", analysis_id=str(analysis_id))
            failure = "no space left on the server's disk for its results; tell an admin"
        else:
            log.exception("analysis.crashed", analysis_id=str(analysis_id))
            failure = f"internal error while analysing ({type(exc).__name__}); see the server log"
    with session_scope(services.runtime.session_factory) as session:
        recorded = analysis_service.finish(
            session=session, analysis_id=analysis_id, results=results, failure_reason=failure
        )
    log.info(
        "analysis.failed" if failure else "analysis.completed",
        analysis_id=str(analysis_id),
        recorded=recorded,
    )
    if results is not None and recorded:
        if services.jobs.others_waiting():
            # Drawing a 2k image's overlays takes about a second: the next analyses come
            # first, and the overlays are drawn when first asked for.
            log.info("analysis.overlays_deferred", analysis_id=str(analysis_id))
        else:
            _draw_overlays(job, services, results)


def _draw_overlays(job: Job, services: AnalysisServices, results: dict[str, object]) -> None:
    """Draw the overlay images now, while no other analysis waits, so the first viewer does
    not wait for them."""
    from service.analysis.overlay_images import draw_overlays, overlay_caption

    kinds = results.get("overlays")
    disclaimer = results.get("disclaimer")
    if not isinstance(kinds, list) or not isinstance(disclaimer, str):
        return
    try:
        draw_overlays(
            services.runtime.settings.results_path,
            job.analysis_id,
            [str(k) for k in kinds],
            caption=overlay_caption(job.model_name, job.model_version, disclaimer),
        )
    except OSError:
        # Drawn on first request instead; the results are stored either way.
        log.exception("analysis.overlays_not_drawn", analysis_id=str(job.analysis_id))


def _claim(analysis_id: uuid.UUID, services: AnalysisServices) -> Job | None:
    with session_scope(services.runtime.session_factory) as session:
        analysis = analysis_service.claim(session=session, analysis_id=analysis_id)
        if analysis is None:
            return None
        found = repository.get_with_context(session, analysis_id)
        assert found is not None
        _analysis, instance, series, study = found
        return Job(
            analysis_id=analysis.id,
            created_at=analysis.created_at,
            model_name=analysis.model_name,
            model_version=analysis.model_version,
            model_sha256=analysis.model_sha256,
            methods=parse_methods(analysis.methods.split(",")),
            study_instance_uid=study.study_instance_uid,
            series_instance_uid=series.series_instance_uid,
            sop_instance_uid=instance.sop_instance_uid,
            image_path=services.runtime.archive.path(instance.file_path),
        )
