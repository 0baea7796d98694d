"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session that commits when the block succeeds and rolls back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# SQLite has one writer at a time; its busy handler makes waiters sleep 1, 2, 5 ... 100 ms.
# Writers of this process queue here instead and start the moment the lock is free.
_SQLITE_WRITER = threading.Lock()


@contextmanager
def write_session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session for a read-then-write transaction; commit or roll back at the end.

    On SQLite the transaction holds the database's write lock from its first statement
    (BEGIN IMMEDIATE), taken in turn by this process's writers.
    """
    bind = factory.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        with session_scope(factory) as session:
            yield session
        return
    with _SQLITE_WRITER, session_scope(factory) as session:
        session.connection(execution_options={WRITE_LOCK_OPTION: True})
        yield session
