"""``vigil worker``: a Celery worker consuming Vigil's jobs from VIGIL_BROKER_URL."""

from __future__ import annotations

import click

from service.log_config import configure_logging
from service.settings import get_settings
from service.worker.celery_app import create_celery


@click.command()
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
def worker(concurrency: int) -> None:
    """Run a worker process (needs VIGIL_BROKER_URL, e.g. redis://127.0.0.1:6379/0)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        app = create_celery(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    app.worker_main(["worker", f"--concurrency={concurrency}", "--loglevel=INFO"])
