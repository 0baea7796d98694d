"""Celery workers on real Redis: a worker killed mid-job leaves the job to be delivered again,
and the analysis completes exactly once (on PostgreSQL in CI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.auth.roles import Role
from service.orm import Analysis, AnalysisStatus, Instance, Series, Study
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import REDIS_URL, bearer
from tests.factories import make_cr, to_bytes
from tests.model_bundles import TEST_CLASSIFIER, write_test_classifier
from tests.test_stow import stow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REDIS_URL, reason="set VIGIL_TEST_REDIS_URL for the Celery tests"),
]


@pytest.fixture
def celery_settings(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    # A big enough input that occlusion takes seconds: long enough to kill a worker mid-job.
    write_test_classifier(tmp_path / "models", size=384, widths=(24, 32, 64, 96, 128))
    queue = f"vigil-test-{uuid.uuid4().hex[:8]}"
    yield settings.model_copy(
        update={
            "models_dir": tmp_path / "models",
            "default_model": TEST_CLASSIFIER,
            "broker_url": REDIS_URL,
            "job_queue": queue,
            "job_visibility_timeout_s": 2,
            "auto_analyse": False,
        }
    )
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(queue, f"{queue}.unacked", "unacked", "unacked_index")


def worker_env(settings: Settings) -> dict[str, str]:
    return os.environ | {
        "VIGIL_ENVIRONMENT": "test",
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_ARCHIVE_DIR": str(settings.archive_path),
        "VIGIL_RESULTS_DIR": str(settings.results_path),
        "VIGIL_VAR_DIR": str(settings.var_dir),
        "VIGIL_MODELS_DIR": str(settings.models_dir),
        "VIGIL_DEFAULT_MODEL": settings.default_model,
        "VIGIL_BROKER_URL": str(settings.broker_url),
        "VIGIL_JOB_QUEUE": settings.job_queue,
        "VIGIL_JOB_VISIBILITY_TIMEOUT_S": str(settings.job_visibility_timeout_s),
    }


@contextmanager
def worker(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    vigil = Path(sys.executable).parent / "vigil"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(vigil), "worker", "--concurrency", "1"],
            env=worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill the pool children too
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def analysis_row(runtime: Runtime, analysis_id: str) -> Analysis:
    with runtime.session_factory() as session:
        row = session.get(Analysis, uuid.UUID(analysis_id))
        assert row is not None
        return row


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = log_path.read_text()[-4000:] if log_path.exists() else ""
            pytest.fail(f"timed out waiting for {what}; worker log:\n{tail}")
        time.sleep(0.02)


def test_a_killed_worker_s_job_is_redelivered_and_completed_exactly_once(
    celery_settings: Settings, runtime: Runtime, tokens: dict[Role, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    ds = make_cr(rows=400, columns=360)
    with TestClient(create_app(celery_settings)) as api:
        assert stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)]).status_code == 200
        answer = api.post(
            f"/api/v1/studies/{ds.StudyInstanceUID}/analyses",
            json={"methods": ["occlusion"]},
            headers=bearer(tokens[Role.INTEGRATION]),
        )
        assert answer.status_code == 202, answer.text
        analysis_id = answer.json()["analyses"][0]["analysis_id"]

    with worker(celery_settings, log_path) as first:
        wait_for(
            lambda: analysis_row(runtime, analysis_id).status is AnalysisStatus.RUNNING,
            120,
            "the first worker to start the job",
            log_path,
        )
        time.sleep(0.3)  # well inside the job: occlusion takes seconds here
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed = analysis_row(runtime, analysis_id)
    assert killed.status is AnalysisStatus.RUNNING, "the job finished before the kill"
    assert killed.attempts == 1

    with worker(celery_settings, log_path):
        wait_for(
            lambda: analysis_row(runtime, analysis_id).status is AnalysisStatus.DONE,
            180,
            "the redelivered job to complete",
            log_path,
        )
    done = analysis_row(runtime, analysis_id)
    assert done.attempts == 2
    assert done.results is not None
    assert set(done.results["outputs"]) == {
        "secondary_capture",
        "probability_map",
        "measurement_report",
    }
    with runtime.session_factory() as session:
        in_study = session.scalar(
            select(func.count())
            .select_from(Instance)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Study.study_instance_uid == ds.StudyInstanceUID)
        )
    assert in_study == 1 + 3, "each output is filed exactly once"
