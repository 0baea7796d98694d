"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

# Execution option: start this session's SQLite transaction with BEGIN IMMEDIATE.
WRITE_LOCK_OPTION = "vigil_sqlite_write_lock"
# Execution option: commit this SQLite transaction without waiting for the disk (see
# session_scope's ``durable``).
NOT_DURABLE_OPTION = "vigil_sqlite_not_durable"
_SYNCHRONOUS = "vigil_synchronous"
# A pooled server connection idle this long is checked before use (see _ping_after_idle).
PING_AFTER_IDLE_S = 1.0
_CHECKED_IN_AT = "vigil_checked_in_at"


def create_db_engine(
    database_url: str, *, ping_after_idle_s: float = PING_AFTER_IDLE_S, **kwargs: Any
) -> Engine:
    """Return an engine; for SQLite, create the folder and switch on WAL and foreign keys."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs: do it ourselves.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    _ping_after_idle(engine, ping_after_idle_s)
    return engine


def _ping_after_idle(engine: Engine, idle_s: float) -> None:
    """Check a pooled connection before use once it has lain idle ``idle_s`` seconds.

    A connection the server dropped meanwhile (a restart, an idle timeout) is replaced
    instead of failing the request. Unlike ``pool_pre_ping`` this spares a round trip per
    checkout under steady load, when connections go back and out again within milliseconds;
    a drop that lands in that gap fails one request, and the pool then reconnects.
    """

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    def checking_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < idle_s:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's own error: the connection is gone
            raise DisconnectionError("pooled connection dropped by the server") from exc

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checking_out)


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed row survives power loss, the same promise the archive makes for files.
    cursor.execute("PRAGMA synchronous=FULL")
    record.info[_SYNCHRONOUS] = "FULL"
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    # NORMAL in WAL mode: the commit is written to the WAL but not fsynced; the next FULL
    # commit (or a checkpoint) flushes it with its own. Set per transaction, before BEGIN.
    synchronous = "NORMAL" if options.get(NOT_DURABLE_OPTION, False) else "FULL"
    if conn.info.get(_SYNCHRONOUS) != synchronous:
        conn.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
        conn.info[_SYNCHRONOUS] = synchronous
    # Writers that read-then-write (ingest) take the write lock up front: a deferred
    # transaction could not upgrade once another writer committed in between.
    immediate = options.get(WRITE_LOCK_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory the app, the CLI and the workers share."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


# SQLite has one writer at a time; its busy handler makes waiters sleep 1, 2, 5 ... 100 ms.
# Writers of this process queue here instead and start the moment the lock is free.
class _WriterLock:
    """A lock that refuses to be taken twice by one thread (that would wait forever)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> None:
        if self._owner == threading.get_ident():
            raise RuntimeError("a write transaction was opened inside another on the same thread")
        self._lock.acquire()
        self._owner = threading.get_ident()

    def __exit__(self, *_exc: object) -> None:
        self._owner = None
        self._lock.release()


_SQLITE_WRITER = _WriterLock()
_NOT_DURABLE_ON_SERVER = text("SET LOCAL synchronous_commit TO OFF")


@contextmanager
def session_scope(factory: sessionmaker[Session], *, durable: bool = True) -> Iterator[Session]:
    """Yield a session for a unit of work; commit when the block succeeds, roll back if not.

    On SQLite the transaction takes the database's write lock at its first statement
    (BEGIN IMMEDIATE), in turn with this process's other writers: a transaction that reads
    and then writes could otherwise fail at once ("database is locked") when another writer
    committed in between. Read-only work uses a plain session instead.

    ``durable=False`` commits without waiting for the database's disk flush (SQLite
    ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``): the commit is atomic and
    survives this process crashing, but a power loss or an operating-system crash in the
    following moments may undo it. For rows whose loss costs less than the wait does.
    """
    bind = factory.kw.get("bind")
    sqlite = bind is not None and bind.dialect.name == "sqlite"
    with _SQLITE_WRITER if sqlite else nullcontext():
        session = factory()
        try:
            if sqlite:
                session.connection(
                    execution_options={WRITE_LOCK_OPTION: True, NOT_DURABLE_OPTION: not durable}
                )
            elif not durable:
                session.execute(_NOT_DURABLE_ON_SERVER)
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
