"""SQLite work the event loop does itself, where it need not wait: each spares a thread hop.

A request handed to a worker thread and back cost 0.3-0.7 ms of CPU here (thread wake-ups
and GIL hand-overs on two cores): more than a one-instance retrieve's lookup, its file read
and its access-log row together. So, on SQLite, the loop does these itself, on a connection
of its own (waiting for a pooled one that request threads hold would stall every request):

- reads, with a time budget: a statement still running when the budget is spent is
  interrupted (``LoopTooLong``) and the caller runs the work again in a worker thread;
- the one-row commits of reads' access-log rows, when the write turn is free at once; when
  another writer holds it, the caller commits in a worker thread, which waits its turn;
- the store of a received instance (``store_transaction``), when the write turn is free at
  once, on a connection whose commits wait for the disk as every store's do; under load,
  the instances that worker threads finished receiving meanwhile (``arrivals``) are stored
  together in one such transaction (``store.store_arrivals``).

Its connection never waits for a lock (``busy_timeout=0``) and does not checkpoint when it
commits (a checkpoint flushes the disk): every ``CHECKPOINT_EVERY`` commits it asks a
thread of its own for a passive checkpoint instead. On a database server none of this
applies: ``open_loop_database`` returns None.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import SingletonThreadPool

from service.db import create_db_engine, sqlite_writer_if_free
from service.log_config import get_logger
from service.sqlite_compiled import (
    DriverTransaction,
    compiled_insert,
    driver_connection,
    driver_transaction,
)

if TYPE_CHECKING:
    from service.dicom.store import Arrival

log = get_logger(__name__)

LOOP_BUDGET_S = 0.005  # the longest the loop spends in one statement before handing it over
CHECKPOINT_EVERY = 200  # loop commits between passive checkpoints (one-row commits)
_STORE_COMMIT_WEIGHT = 5  # a store writes about five times the pages of an access-log row
_PROGRESS_STEPS = 1000  # SQLite virtual-machine steps between looks at the clock
_SQLITE_BUSY, _SQLITE_INTERRUPT = 5, 9


class ThreadNeeded(Exception):
    """Work the loop began would wait or run long; nothing was written: run it in a thread."""


class LoopTooLong(ThreadNeeded):
    """A statement ran past the loop's budget and was interrupted: run it in a thread."""


class LoopDatabase:
    """The event loop's own SQLite connection (one per thread that uses it); ``close`` it."""

    def __init__(self, database_url: str, *, commits: bool) -> None:
        # Commits do not wait for the disk (synchronous=NORMAL), as the read log's own engine.
        self.engine = create_db_engine(
            database_url, durable_commits=False, poolclass=SingletonThreadPool
        )
        event.listen(self.engine, "connect", _never_wait)
        # Stores commit as every store does, waiting for the disk (synchronous=FULL).
        self.store_engine = create_db_engine(database_url, poolclass=SingletonThreadPool)
        event.listen(self.store_engine, "connect", _never_wait)
        # Instances received under load whose files are on disk, for the next store on the
        # loop to store together (``store.store_arrivals``); appended from worker threads.
        self.arrivals: deque[Arrival] = deque()
        self._commits_allowed = commits
        self._commits = 0
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="loop-checkpoint")
        self._checkpoint: Future[None] | None = None

    @contextmanager
    def bounded(self, budget_s: float | None = None) -> Iterator[None]:
        """Run reads on this engine for at most ``budget_s`` (default ``LOOP_BUDGET_S``);
        raise LoopTooLong past it."""
        deadline = time.perf_counter() + (LOOP_BUDGET_S if budget_s is None else budget_s)
        with driver_connection(self.engine) as connection:
            connection.set_progress_handler(lambda: time.perf_counter() > deadline, _PROGRESS_STEPS)
            try:
                yield
            except DBAPIError as exc:
                if _sqlite_code(exc) == _SQLITE_INTERRUPT:
                    raise LoopTooLong from exc
                raise
            finally:
                connection.set_progress_handler(None, _PROGRESS_STEPS)

    def try_commit(self, statement: Insert, params: Mapping[str, Any]) -> bool:
        """Insert one row and commit it now if the write turn is free at once; False when it
        is not (nothing written: commit it in a thread instead)."""
        if not self._commits_allowed:
            return False
        compiled = compiled_insert(self.engine, statement, params)
        if compiled is None:
            return False
        with sqlite_writer_if_free(self.engine) as free:
            if not free:
                return False
            try:
                with driver_connection(self.engine) as connection:
                    compiled.run(connection, params)
            except DBAPIError as exc:
                if _sqlite_code(exc) == _SQLITE_BUSY:  # a writer outside Vigil's turns
                    return False
                raise
        self._committed()
        return True

    @contextmanager
    def store_transaction(self) -> Iterator[DriverTransaction]:
        """Yield a write transaction that commits durably, if the write turn is free now;
        raise ThreadNeeded (nothing written) when another writer holds it."""
        with sqlite_writer_if_free(self.store_engine) as free, ExitStack() as stack:
            if not free:
                raise ThreadNeeded("another writer holds the write turn")
            try:
                transaction = stack.enter_context(driver_transaction(self.store_engine))
            except DBAPIError as exc:
                if _sqlite_code(exc) == _SQLITE_BUSY:  # a writer outside Vigil's turns
                    raise ThreadNeeded("another writer holds the database") from exc
                raise
            yield transaction
        self._committed(_STORE_COMMIT_WEIGHT)

    def close(self) -> None:
        self._checkpointer.shutdown(wait=True)
        self.engine.dispose()
        self.store_engine.dispose()

    def _committed(self, weight: int = 1) -> None:
        self._commits += weight
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._request_checkpoint()

    def _request_checkpoint(self) -> None:
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = self._checkpointer.submit(self._checkpoint_now)

    def _checkpoint_now(self) -> None:
        try:
            with driver_connection(self.engine) as connection:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the next one tries again; other writers checkpoint too
            log.warning("db.checkpoint_failed", error=type(exc).__name__)


def open_loop_database(database_url: str, *, durable_read_log: bool) -> LoopDatabase | None:
    """Return the loop's SQLite connection, or None on a database server.

    With a durable read log (``VIGIL_DURABLE_READ_LOG``) each access-log commit waits for the
    disk: the loop then only reads, and those commits stay in worker threads.
    """
    if make_url(database_url).get_backend_name() != "sqlite":
        return None
    return LoopDatabase(database_url, commits=not durable_read_log)


def _never_wait(dbapi_connection: Any, _record: Any) -> None:
    # Runs after the engine's own settings (db._sqlite_pragmas), which it overrides.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _sqlite_code(exc: DBAPIError) -> int | None:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF
