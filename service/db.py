"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# Execution option: start this session's SQLite transaction with BEGIN IMMEDIATE.
WRITE_LOCK_OPTION = "vigil_sqlite_write_lock"


def create_db_engine(database_url: str, **kwargs: Any) -> Engine:
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
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed row survives power loss, the same promise the archive makes for files.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers that read-then-write (ingest) take the write lock up front: a deferred
    # transaction could not upgrade once another writer committed in between.
    immediate = conn.get_execution_options().get(WRITE_LOCK_OPTION, False)
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


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session for a unit of work; commit when the block succeeds, roll back if not.

    On SQLite the transaction takes the database's write lock at its first statement
    (BEGIN IMMEDIATE), in turn with this process's other writers: a transaction that reads
    and then writes could otherwise fail at once ("database is locked") when another writer
    committed in between. Read-only work uses a plain session instead.
    """
    bind = factory.kw.get("bind")
    sqlite = bind is not None and bind.dialect.name == "sqlite"
    with _SQLITE_WRITER if sqlite else nullcontext():
        session = factory()
        try:
            if sqlite:
                session.connection(execution_options={WRITE_LOCK_OPTION: True})
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
