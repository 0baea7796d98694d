"""Where analysis jobs run: a background thread in this process, or Celery workers.

Both run the same task function; the Celery one is acknowledged late, so a killed worker's
job is delivered again, and the task's claim/finish steps make it complete exactly once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from celery import Celery
from kombu.exceptions import OperationalError

from service.db import database_unavailable
from service.log_config import get_logger

log = get_logger(__name__)

RUN_ANALYSIS_TASK = "vigil.analysis.run"
# Waits before each new try of a job the database could not serve (about half a minute in all),
# then one try every DATABASE_RETRY_EVERY_S for as long as it stays away.
DATABASE_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0)
DATABASE_RETRY_EVERY_S = 30.0


class JobsUnavailable(Exception):
    """The job queue cannot take a job now (its broker cannot be reached)."""


class JobQueue(Protocol):
    def enqueue_analysis(self, analysis_id: uuid.UUID) -> None:
        """Queue an analysis's job; raise JobsUnavailable when it cannot be queued."""
        ...

    def others_waiting(self) -> bool:
        """Return whether analyses wait in this process behind the one running now."""
        ...

    def close(self) -> None: ...


class InProcessJobs:
    """One background thread runs jobs in arrival order (the embedded default)."""

    def __init__(
        self,
        run: Callable[[uuid.UUID], None],
        retry_delays_s: tuple[float, ...] = DATABASE_RETRY_DELAYS_S,
        retry_every_s: float = DATABASE_RETRY_EVERY_S,
    ) -> None:
        self._run = run
        self._retry_delays_s = retry_delays_s
        self._retry_every_s = retry_every_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-job")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def enqueue_analysis(self, analysis_id: uuid.UUID) -> None:
        future = self._pool.submit(self._run_logged, analysis_id)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def others_waiting(self) -> bool:
        with self._lock:
            return len(self._pending) > 1  # the running job is pending until it returns

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Return True once every job submitted so far has finished (for tests and shutdown)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            try:
                future.result(timeout=timeout)
            except TimeoutError:
                return False
        return True

    def close(self) -> None:
        self._closing.set()  # a job waiting to retry gives up now
        self._pool.shutdown(wait=True)

    def _run_logged(self, analysis_id: uuid.UUID) -> None:
        """Run a job; one the database could not serve (a restart, a lock, a full disk) is
        tried again after each delay, then every ``retry_every_s`` until the database serves
        it or the server shuts down (its analysis is then resumed at the next start): the job
        claims its analysis again, so a retry is safe. Any other failure is logged and ends
        the job (its analysis records the reason when it got that far)."""
        tries = 0
        while True:
            try:
                self._run(analysis_id)
                return
            except Exception as exc:
                if not database_unavailable(exc) or self._closing.is_set():
                    log.exception("job.crashed", analysis_id=str(analysis_id))
                    return
                delay_s = self._delay(tries)
                tries += 1
                log.warning(
                    "job.database_unavailable",
                    analysis_id=str(analysis_id),
                    retry_s=delay_s,
                    tries=tries,
                )
                if self._closing.wait(delay_s):
                    log.warning("job.given_up_at_shutdown", analysis_id=str(analysis_id))
                    return

    def _delay(self, tries: int) -> float:
        delays = self._retry_delays_s
        return delays[tries] if tries < len(delays) else self._retry_every_s

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)


class CeleryJobs:
    """Jobs go to Redis; `vigil worker` processes run them."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def enqueue_analysis(self, analysis_id: uuid.UUID) -> None:
        try:
            # Celery retries the connection a few times (under a second) before giving up.
            self._app.send_task(RUN_ANALYSIS_TASK, args=[str(analysis_id)])
        except (OperationalError, OSError) as exc:
            raise JobsUnavailable(
                f"the job broker cannot be reached ({type(exc).__name__})"
            ) from exc

    def others_waiting(self) -> bool:
        return False  # the broker's queue is not this process's to see

    def close(self) -> None:
        self._app.close()
