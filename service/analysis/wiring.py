"""Start the analysis services for a process: models, and where its jobs run."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from service.analysis import lung_fields
from service.analysis.resume_turn import ResumeTurn
from service.analysis.runtime import AnalysisServices, analysis_services
from service.analysis.tasks import run_analysis
from service.db import session_scope
from service.inference.errors import ModelUnavailable
from service.log_config import get_logger
from service.orm import Analysis, AnalysisStatus
from service.runtime import Runtime
from service.worker.celery_app import create_celery
from service.worker.jobs import CeleryJobs, InProcessJobs, JobQueue

log = get_logger(__name__)


def start_analysis_services(runtime: Runtime) -> AnalysisServices:
    """Return analysis services whose jobs run in this process, or in Celery workers when
    VIGIL_BROKER_URL is set. In-process, analyses left queued or running by an earlier
    process are queued again, by one process only when several serve (see ``resume_turn``)."""
    if runtime.settings.broker_url:
        celery = create_celery(runtime.settings)
        return analysis_services(runtime, lambda _services: CeleryJobs(celery))

    def in_process(services: AnalysisServices) -> JobQueue:
        return InProcessJobs(lambda analysis_id: run_analysis(analysis_id, services))

    services = analysis_services(runtime, in_process)
    services.helper.warm_up()
    _warm_up_lungs(services)
    services.resume_turn = ResumeTurn.take(runtime.settings.var_dir)
    if services.resume_turn is None:
        log.info("analysis.resume_left_to_another_process")
        return services
    for analysis_id in _unfinished(runtime):
        services.jobs.enqueue_analysis(analysis_id)
    return services


def queue_only_analysis_services(runtime: Runtime) -> AnalysisServices:
    """Return analysis services for a short-lived process (the CLI): analyses are recorded and
    sent to Celery when a broker is set, otherwise left queued for the server to run."""
    if runtime.settings.broker_url:
        celery = create_celery(runtime.settings)
        return analysis_services(runtime, lambda _services: CeleryJobs(celery))
    return analysis_services(runtime)


def _warm_up_lungs(services: AnalysisServices) -> None:
    try:
        model = services.models.get(services.runtime.settings.lung_model)
    except ModelUnavailable:
        return  # analyses go on with a grid of regions; the pipeline says so
    lung_fields.warm_up(services.helper, model)


def _unfinished(runtime: Runtime) -> list[uuid.UUID]:
    with session_scope(runtime.session_factory) as session:
        ids = session.scalars(
            select(Analysis.id)
            .where(Analysis.status.in_([AnalysisStatus.QUEUED, AnalysisStatus.RUNNING]))
            .order_by(Analysis.created_at)
        ).all()
    if ids:
        log.info("analysis.resumed", count=len(ids))
    return list(ids)
