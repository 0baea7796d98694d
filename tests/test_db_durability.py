"""Transactions: a store's commit waits for the disk, a read's access-log row on SQLite by
default not, and a one-statement lookup needs no transaction at all.

On SQLite the flush setting is ``PRAGMA synchronous`` (2 = FULL, 1 = NORMAL), on PostgreSQL
``synchronous_commit``; each engine's connections are asked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, event, func, select, text, update

from service.app import create_app
from service.auth import service as auth_service
from service.auth.roles import Role
from service.db import (
    commit_statement,
    create_db_engine,
    create_session_factory,
    lookup_connection,
    lookup_session,
    session_scope,
)
from service.orm import ApiToken
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import bearer
from tests.factories import make_cr, to_bytes
from tests.test_stow import stow


@pytest.fixture
def one_connection(database_url: str) -> Iterator[Engine]:
    """An engine whose pool holds one connection, so every transaction below shares it."""
    engine = create_db_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _flush_setting(connection: Connection) -> str:
    if connection.dialect.name == "sqlite":
        value = connection.execute(text("PRAGMA synchronous")).scalar_one()
        return {2: "full", 1: "normal"}[value]
    return str(connection.execute(text("SHOW synchronous_commit")).scalar_one())


def test_commits_wait_for_the_disk_unless_the_engine_is_made_not_to(database_url: str) -> None:
    durable = create_db_engine(database_url)
    try:
        with durable.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            assert _flush_setting(connection) == ("full" if sqlite else "on")
    finally:
        durable.dispose()
    if not sqlite:
        with pytest.raises(ValueError, match="SQLite"):
            create_db_engine(database_url, durable_commits=False)
        return
    unflushed = create_db_engine(database_url, durable_commits=False)
    try:
        with unflushed.connect() as connection:
            assert _flush_setting(connection) == "normal"
    finally:
        unflushed.dispose()


def test_a_statement_committed_on_its_own_is_there_for_others(database_url: str) -> None:
    engine = create_db_engine(database_url)
    factory = create_session_factory(engine)
    try:
        with session_scope(factory) as session:
            _token, _secret = auth_service.create_token(session=session, role=Role.AUDITOR)
        commit_statement(engine, update(ApiToken).values(name="renamed"), {})
        with factory() as session:
            assert session.scalars(select(ApiToken.name)).all() == ["renamed"]
    finally:
        engine.dispose()


def _log_inserts(settings: Settings, durable_read_log: bool) -> tuple[list[str], int, int | None]:
    """Store one instance and retrieve it; return the log actions and the access-log INSERTs
    run on the main engine and on the read-log engine (None: it is the main engine)."""
    settings = settings.model_copy(
        update={"durable_read_log": durable_read_log, "auto_analyse": False}
    )
    inserts = {"main": 0, "read_log": 0}

    def count_on(engine: Engine, kind: str) -> None:
        """Count the access-log INSERTs an engine's connections run, as the driver sees them
        (on SQLite the reads' rows are inserted on the driver directly, not through
        SQLAlchemy's statement events)."""

        def seen(statement: str) -> None:
            if statement.startswith("INSERT INTO access_log"):
                inserts[kind] += 1

        if engine.dialect.name == "sqlite":
            event.listen(engine, "checkout", lambda dbapi, *_: dbapi.set_trace_callback(seen))
        else:
            event.listen(
                engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen(statement)
            )

    with TestClient(create_app(settings)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        separate = runtime.read_log_engine is not runtime.engine
        with session_scope(runtime.session_factory) as session:
            _token, secret = auth_service.create_token(session=session, role=Role.INTEGRATION)
        count_on(runtime.engine, "main")
        loop_database = client.app.state.loop_database  # type: ignore[attr-defined]
        if loop_database is not None:
            # SQLite: the event loop may commit a store on its own store connection, which
            # waits for the disk as the main engine does.
            count_on(loop_database.store_engine, "main")
            with loop_database.store_engine.connect() as connection:
                assert _flush_setting(connection) == "full"
        if separate:
            # A read's row is committed on the event loop's own connection, or (when the
            # write turn is taken) on the read log's engine: both without waiting for the disk.
            for engine in (runtime.read_log_engine, loop_database.engine):
                count_on(engine, "read_log")
                with engine.connect() as connection:
                    assert _flush_setting(connection) == "normal"
        ds = make_cr()
        assert stow(client, secret, [to_bytes(ds)]).status_code == 200
        url = (
            f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        assert client.get(url, headers=bearer(secret)).status_code == 200
        with runtime.session_factory() as session:
            rows = session.execute(text("SELECT action FROM access_log ORDER BY at"))
            actions = [r[0] for r in rows]
        return actions, inserts["main"], inserts["read_log"] if separate else None


def test_a_reads_log_row_is_committed_before_the_answer_on_sqlite_without_waiting_for_the_disk(
    settings: Settings, database_url: str
) -> None:
    actions, main, read_log = _log_inserts(settings, durable_read_log=False)
    assert actions == ["dicom.store", "dicom.retrieve"]
    if database_url.startswith("sqlite"):
        assert (main, read_log) == (1, 1)  # the store's row with the store, the read's apart
    else:
        assert (main, read_log) == (2, None)  # PostgreSQL: every commit is flushed


def test_durable_read_log_waits_for_the_disk_as_a_store_does(settings: Settings) -> None:
    actions, main, read_log = _log_inserts(settings, durable_read_log=True)
    assert actions == ["dicom.store", "dicom.retrieve"]
    assert (main, read_log) == (2, None)


@pytest.mark.parametrize("lookup", ["connection", "session"])
def test_a_lookup_leaves_its_pooled_connection_ready_for_a_unit_of_work(
    one_connection: Engine, lookup: str
) -> None:
    """A lookup runs in autocommit on a server database; the connection it hands back to
    the pool must roll back a failed unit of work as before."""
    factory = create_session_factory(one_connection)
    if lookup == "connection":
        with lookup_connection(one_connection) as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    else:
        with lookup_session(factory) as session:
            assert session.execute(text("SELECT 1")).scalar_one() == 1
            if one_connection.dialect.name != "sqlite":
                dbapi = session.connection().connection.dbapi_connection
                assert dbapi is not None and dbapi.autocommit
    with pytest.raises(RuntimeError), session_scope(factory) as session:
        auth_service.create_token(session=session, role=Role.INTEGRATION)
        session.flush()
        raise RuntimeError("the unit of work fails after writing")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 0


def _sqlite_temp_files() -> list[str]:
    """SQLite's temporary files this process has open (deleted at creation, kept open)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if "etilqs_" in target:
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_a_large_savepoint_keeps_its_page_images_in_memory(tmp_path: Path) -> None:
    # A store under load is a savepoint per instance: its journal of page images passed
    # SQLite's 64 KiB spill size and became a file created and deleted in /var/tmp.
    engine = create_db_engine(f"sqlite:///{tmp_path / 'savepoints.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)"))
            connection.execute(text("CREATE INDEX rows_body ON rows (body)"))
            connection.execute(
                text("INSERT INTO rows (id, body) VALUES (:id, randomblob(3000))"),
                [{"id": n} for n in range(200)],
            )
        with engine.begin() as connection:
            assert connection.execute(text("PRAGMA temp_store")).scalar_one() == 2  # MEMORY
            connection.execute(text("UPDATE rows SET body = randomblob(3000) WHERE id < 5"))
            with connection.begin_nested():
                # ~200 pages of 4 KiB changed inside the savepoint: far past the spill size
                connection.execute(text("UPDATE rows SET body = randomblob(3000)"))
                assert _sqlite_temp_files() == []
            assert connection.execute(text("SELECT count(*) FROM rows")).scalar_one() == 200
    finally:
        engine.dispose()
