"""The analysis job as a Celery task (`vigil worker`): the same function the thread runs.

Acknowledged late and rejected when its worker is lost, so a killed worker's job is
delivered again; ``run_analysis`` then claims it again or, if it finished, leaves it.
"""

from __future__ import annotations

import threading
import uuid

from celery import Task, shared_task
from sqlalchemy.exc import OperationalError

from service.analysis.runtime import AnalysisServices
from service.analysis.tasks import run_analysis
from service.runtime import open_runtime
from service.settings import get_settings
from service.worker.jobs import RUN_ANALYSIS_TASK

_services: AnalysisServices | None = None
_services_lock = threading.Lock()


def process_services() -> AnalysisServices:
    """Return this worker process's services, models loaded once on first use."""
    global _services
    with _services_lock:
        if _services is None:
            from service.analysis.wiring import queue_only_analysis_services

            _services = queue_only_analysis_services(open_runtime(get_settings()))
        return _services


@shared_task(  # type: ignore[untyped-decorator]
    name=RUN_ANALYSIS_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # A database that is briefly away (restart, failover) is worth a few more tries.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def run_analysis_task(self: Task, analysis_id: str) -> None:
    run_analysis(uuid.UUID(analysis_id), process_services())
