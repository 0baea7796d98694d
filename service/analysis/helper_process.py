"""One helper process per server process: a second core for the parts of an analysis that
need nothing from the rest of it (the picture outputs).

Most of an analysis's time after the network is pure-Python DICOM building, which threads
cannot run side by side (the GIL); a process can. The helper is started once, with
``spawn`` (safe beside threads and torch), and kept. Where no child process can be started
(a Celery prefork worker is itself a daemonic child) or the helper died, the work runs
inline instead: slower, never wrong.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from service.log_config import get_logger

log = get_logger(__name__)

PARENT_CHECK_SECONDS = 0.5
T = TypeVar("T")
R = TypeVar("R")


class HelperProcess:
    """Runs functions (importable, picklable arguments) in a helper process, or inline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._unavailable = False

    def submit(self, fn: Callable[[T], R], argument: T) -> Callable[[], R]:
        """Start ``fn(argument)`` and return a function that waits for its result."""
        pool = self._running_pool()
        if pool is None:
            return _inline(fn, argument)
        try:
            future: Future[R] = pool.submit(fn, argument)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._discard(pool, exc)
            return _inline(fn, argument)

        def result() -> R:
            try:
                return future.result()
            except BrokenProcessPool as exc:
                self._discard(pool, exc)
                return fn(argument)

        return result

    def warm_up(self) -> None:
        """Start the helper now (in the background) so the first analysis does not wait."""
        pool = self._running_pool()
        if pool is not None:
            pool.submit(_nothing)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _running_pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._pool is None and not self._unavailable:
                if multiprocessing.current_process().daemon:
                    log.info("helper_process.inline", reason="daemonic process")
                    self._unavailable = True
                else:
                    self._pool = ProcessPoolExecutor(
                        max_workers=1,
                        mp_context=multiprocessing.get_context("spawn"),
                        initializer=_leave_with_parent,
                        initargs=(os.getpid(),),
                    )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor, exc: BaseException) -> None:
        log.warning("helper_process.broken", error=type(exc).__name__)
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)


def _inline(fn: Callable[[T], R], argument: T) -> Callable[[], R]:
    return lambda: fn(argument)


def _nothing() -> None:
    return None


def _leave_with_parent(parent: int) -> None:
    """In the helper: exit when the process that started it is gone (killed servers must not
    leave helpers behind; the helper would otherwise wait on its queue for ever)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="helper-parent-watch", daemon=True).start()


_shared = HelperProcess()


def shared_helper() -> HelperProcess:
    """Return this process's helper (one per process, started on first use)."""
    return _shared
