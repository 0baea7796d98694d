"""The Celery application for scale-out workers (``VIGIL_BROKER_URL=redis://...``).

Jobs are acknowledged late, so a worker killed mid-job leaves the job to be redelivered.
A job whose worker vanished goes back to the queue after ``VIGIL_JOB_VISIBILITY_TIMEOUT_S``.
"""

from __future__ import annotations

from celery import Celery

from service.settings import Settings

TASK_MODULES = ["service.analysis.celery_tasks"]


def create_celery(settings: Settings) -> Celery:
    """Return a Celery app for the configured broker; raise if no broker is configured."""
    if not settings.broker_url:
        raise ValueError("VIGIL_BROKER_URL is not set: jobs run in-process, no worker needed")
    app = Celery("vigil", broker=settings.broker_url, include=TASK_MODULES)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue=settings.job_queue,
        broker_transport_options={"visibility_timeout": settings.job_visibility_timeout_s},
    )
    return app
