"""The in-process job thread tries a job again when the database could not serve it (a
restart, a lock), for as long as it stays away; other failures are not retried; shutting
down does not wait out a retry's delay."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

from sqlalchemy.exc import OperationalError

from service.worker.jobs import InProcessJobs


def database_locked() -> OperationalError:
    return OperationalError("UPDATE analyses", {}, sqlite3.OperationalError("database is locked"))


def test_a_job_the_database_could_not_serve_is_tried_again() -> None:
    calls: list[uuid.UUID] = []

    def run(analysis_id: uuid.UUID) -> None:
        calls.append(analysis_id)
        if len(calls) < 3:
            raise database_locked()

    jobs = InProcessJobs(run, retry_delays_s=(0.0, 0.0, 0.0))
    job = uuid.uuid4()
    jobs.enqueue_analysis(job)
    assert jobs.wait_idle()
    jobs.close()
    assert calls == [job, job, job]  # two refusals, then done


def test_other_failures_end_the_job_and_a_database_away_long_is_waited_for() -> None:
    calls: list[str] = []

    def run(analysis_id: uuid.UUID) -> None:
        calls.append(str(analysis_id))
        if analysis_id.int % 2:
            raise ValueError("a bug")
        if calls.count(str(analysis_id)) <= 8:  # away past the first delays
            raise database_locked()

    jobs = InProcessJobs(run, retry_delays_s=(0.0, 0.0), retry_every_s=0.0)
    buggy, locked = uuid.UUID(int=1), uuid.UUID(int=2)
    jobs.enqueue_analysis(buggy)
    jobs.enqueue_analysis(locked)
    assert jobs.wait_idle()
    jobs.close()
    assert calls.count(str(buggy)) == 1  # not retried
    assert calls.count(str(locked)) == 9  # eight refusals, then done


def test_shutting_down_does_not_wait_out_a_retry() -> None:
    started = threading.Event()

    def run(_analysis_id: uuid.UUID) -> None:
        started.set()
        raise database_locked()

    jobs = InProcessJobs(run, retry_delays_s=(0.0,), retry_every_s=60.0)
    jobs.enqueue_analysis(uuid.uuid4())
    assert started.wait(10)
    began = time.monotonic()
    jobs.close()
    assert time.monotonic() - began < 10
