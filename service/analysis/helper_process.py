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
from typing import Generic, Protocol, TypeVar

from service.log_config import get_logger

log = get_logger(__name__)

PARENT_CHECK_SECONDS = 0.5
T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class HelperProcess:
    """Runs functions (importable, picklable arguments) in a helper process, or inline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._unavailable = False

    def submit(self, fn: Callable[[T], R], argument: T) -> Pending[R]:
        """Start ``fn(argument)``; calling what it returns waits for the result."""
        pool = self._running_pool()
        if pool is None:
            return _Inline(fn, argument)
        try:
            future: Future[R] = pool.submit(fn, argument)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._discard(pool, exc)
            return _Inline(fn, argument)
        return _InHelper(self, pool, future, fn, argument)

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


class Pending(Protocol[R_co]):
    """Work handed to the helper: call it for the result (waiting, or running it here)."""

    def __call__(self) -> R_co: ...

    def cancel(self) -> bool:
        """Return True when the work has not run and now never will."""
        ...


class _InHelper(Generic[T, R]):
    def __init__(
        self,
        helper: HelperProcess,
        pool: ProcessPoolExecutor,
        future: Future[R],
        fn: Callable[[T], R],
        argument: T,
    ) -> None:
        self._helper, self._pool, self._future = helper, pool, future
        self._fn, self._argument = fn, argument

    def __call__(self) -> R:
        try:
            return self._future.result()
        except BrokenProcessPool as exc:
            self._helper._discard(self._pool, exc)
            return self._fn(self._argument)

    def cancel(self) -> bool:
        return self._future.cancel()  # False once the helper has it (or has done it)


class _Inline(Generic[T, R]):
    """Work that runs in this process when its result is first asked for (no helper)."""

    def __init__(self, fn: Callable[[T], R], argument: T) -> None:
        self._fn, self._argument = fn, argument
        self._cancelled = False

    def __call__(self) -> R:
        if self._cancelled:
            raise RuntimeError("the work was cancelled")
        return self._fn(self._argument)

    def cancel(self) -> bool:
        self._cancelled = True
        return True


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
