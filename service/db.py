"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Protocol

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's busy handler does the waiting there
    fcntl = None  # type: ignore[assignment]

import psycopg
from sqlalchemy import Connection, Engine, Executable, Insert, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.sqlite_compiled import (
    DriverTransaction,
    compiled_insert,
    driver_connection,
    driver_transaction,
)

# Execution option: start this session's SQLite transaction with BEGIN IMMEDIATE.
WRITE_LOCK_OPTION = "vigil_sqlite_write_lock"
# A pooled server connection idle this long is checked before use (see _ping_after_idle).
PING_AFTER_IDLE_S = 1.0
_CHECKED_IN_AT = "vigil_checked_in_at"


class Executes(Protocol):
    """Where a row is inserted within an open write transaction: a ``Session``, or a
    ``DriverTransaction`` (see ``sqlite_driver_transaction``)."""

    def execute(self, statement: Insert, params: Sequence[Mapping[str, Any]], /) -> object: ...


def create_db_engine(
    database_url: str,
    *,
    ping_after_idle_s: float = PING_AFTER_IDLE_S,
    durable_commits: bool = True,
    **kwargs: Any,
) -> Engine:
    """Return an engine; for SQLite, create the folder and switch on WAL and foreign keys.

    A commit waits until the database has flushed it to disk. ``durable_commits=False``
    (SQLite only) makes an engine whose commits do not wait: each is atomic and survives
    this process crashing, but a power loss or an operating-system crash in the following
    moments may undo it. For rows whose loss costs less than the wait does, written on an
    engine of their own.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" and not durable_commits:
        raise ValueError("commits that do not wait for the disk are an SQLite setting here")
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        # FULL: a committed row survives power loss, the promise the archive makes for files.
        # NORMAL in WAL mode: the WAL is not fsynced at commit; the next FULL commit (or a
        # checkpoint) flushes it with its own.
        synchronous = "FULL" if durable_commits else "NORMAL"
        event.listen(engine, "connect", partial(_sqlite_pragmas, synchronous=synchronous))
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, synchronous: str) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Statement journals (a savepoint's page images) past 64 KiB, and temporary tables, go to
    # RAM instead of files created and deleted in the system's temporary folder.
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers that read-then-write (ingest) take the write lock up front: a deferred
    # transaction could not upgrade once another writer committed in between.
    immediate = conn.get_execution_options().get(WRITE_LOCK_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def lookup_connection(engine: Engine) -> Connection:
    """Return a connection for one read-only statement.

    On a database server it runs in autocommit: the statement is its own transaction, which
    spares the BEGIN and ROLLBACK round trips (two of the three a token lookup made).
    """
    connection = engine.connect()
    if engine.dialect.name == "sqlite":
        return connection  # its own BEGIN is in-process and cheap (see _sqlite_begin)
    return connection.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def lookup_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session for read-only lookups; it is closed without a commit.

    On a database server its statements run in autocommit, each seeing the database as it is
    when it runs, which spares the BEGIN and ROLLBACK round trips. For reads whose
    statements need not agree on one moment: a search's counts may already include an
    instance stored after its list was read.
    """
    with lookup_connection(factory.kw["bind"]) as connection, factory(bind=connection) as session:
        yield session


def commit_statement(engine: Engine, statement: Executable, params: Mapping[str, Any]) -> None:
    """Run one writing statement as a transaction of its own, committed before returning.

    On a database server in autocommit: one round trip instead of BEGIN, statement, COMMIT.
    On SQLite in turn with this process's other writers (see ``session_scope``).
    """
    if engine.dialect.name != "sqlite":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(statement, params)
        return
    with _sqlite_writer(engine):
        compiled = (
            compiled_insert(engine, statement, params) if isinstance(statement, Insert) else None
        )
        if compiled is not None:
            with driver_connection(engine) as driver:
                compiled.run(driver, params)
            return
        with engine.connect().execution_options(**{WRITE_LOCK_OPTION: True}) as connection:
            connection.execute(statement, params)
            connection.commit()


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory the app, the CLI and the workers share."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


# SQLite has one writer at a time; its busy handler makes waiters sleep 1, 2, 5 ... 100 ms.
# Writers queue here instead and start the moment the lock is free: the threads of this
# process on a lock of its own, then the processes writing the same database file (server
# workers, a `vigil ingest` beside the server) on an flock of a file next to it.
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

    def try_enter(self) -> bool:
        """Take the lock if it is free now; False (not taken) if another thread holds it."""
        if self._owner == threading.get_ident() or not self._lock.acquire(blocking=False):
            return False
        self._owner = threading.get_ident()
        return True


_SQLITE_WRITER = _WriterLock()
# Open writer lock files, most recently used last: (process id, database) -> descriptor. An
# flock belongs to an open file, so each process opens its own (a forked child must not
# share its parent's; closing its inherited copy leaves the parent's lock alone). Only
# touched under _SQLITE_WRITER, so no thread holds an flock on one being closed; a few are
# kept (the suite makes a database per test).
_writer_lock_files: OrderedDict[tuple[int, str], int] = OrderedDict()
_WRITER_LOCK_FILES_KEPT = 8


@contextmanager
def _sqlite_writer(bind: Engine | Connection) -> Iterator[None]:
    """Hold the write turn on an SQLite database: this process's, then the file's.

    Like the process's own lock, the file's is waited for as long as it takes: it is held
    for one short write transaction at a time, and a process that dies releases it.
    """
    with _SQLITE_WRITER:
        fd = _writer_lock_file(bind.engine)
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits without holding the GIL
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def sqlite_writer_if_free(engine: Engine) -> Iterator[bool]:
    """Hold the write turn (as ``_sqlite_writer``) only if it is free now: yield True while
    holding it, False (nothing held) when another thread or process has it. For the event
    loop, which must not wait."""
    if not _SQLITE_WRITER.try_enter():
        yield False
        return
    try:
        fd = _writer_lock_file(engine)
        if fd is None:
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        _SQLITE_WRITER.__exit__()


def _writer_lock_file(engine: Engine) -> int | None:
    """Return this process's descriptor of the database's writer lock file (None: an
    in-memory database, or a file system without locks: then SQLite's busy handler waits)."""
    database = engine.url.database
    if fcntl is None or not database or database == ":memory:":
        return None
    key = (os.getpid(), database)
    fd = _writer_lock_files.get(key)
    if fd is not None:
        _writer_lock_files.move_to_end(key)
        return fd
    try:
        fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    _writer_lock_files[key] = fd
    while len(_writer_lock_files) > _WRITER_LOCK_FILES_KEPT:
        os.close(_writer_lock_files.popitem(last=False)[1])
    return fd


@contextmanager
def sqlite_driver_transaction(engine: Engine) -> Iterator[DriverTransaction]:
    """Yield an SQLite write transaction run on the driver (see ``sqlite_compiled``), in turn
    with the other writers as ``session_scope``'s; commit when the block succeeds."""
    with _sqlite_writer(engine), driver_transaction(engine) as transaction:
        yield transaction


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
    with _sqlite_writer(bind) if sqlite and bind is not None else nullcontext():
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


# SQLite's errors that mean "not now" (its other OperationalErrors are the program's own).
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
)


def database_unavailable(exc: Exception) -> bool:
    """Whether an error means the database cannot serve now (down, restarting, locked,
    full), rather than a fault in the request or the program. Errors come wrapped by
    SQLAlchemy, or straight from psycopg (the token lookup's own connections)."""
    error = exc.orig if isinstance(exc, OperationalError) else exc
    if isinstance(error, sqlite3.OperationalError):
        return str(error).lower().startswith(_SQLITE_UNAVAILABLE)
    return isinstance(error, psycopg.OperationalError)
