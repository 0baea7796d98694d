"""Statements compiled once for SQLite (the reads' access-log rows, QIDO's searches) write
and read what SQLAlchemy's own path writes and reads, and fail as it fails."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from service import sqlite_compiled
from service.auth import service as auth_service
from service.auth.roles import Role
from service.db import commit_statement, session_scope, sqlite_driver_transaction
from service.orm import AccessLogEntry
from service.runtime import Runtime
from service.sqlite_compiled import compiled_insert, compiled_query, driver_connection

INSERT = insert(cast(Table, AccessLogEntry.__table__))


def _row(runtime: Runtime, **changes: Any) -> dict[str, Any]:
    with session_scope(runtime.session_factory) as session:
        token, _secret = auth_service.create_token(session=session, role=Role.AUDITOR)
    return {
        "id": uuid.uuid4(),
        "at": datetime(2026, 11, 27, 12, 30, 15, 123456, tzinfo=UTC),
        "user_pk": token.user_pk,
        "token_pk": token.id,
        "username": "svc-auditor",
        "role": "auditor",
        "action": "dicom.retrieve",
        "study_instance_uid": "1.2.3",
        "series_instance_uid": None,
        "sop_instance_uid": "1.2.3.4.5",
        "result_count": 3,
        "status_code": 200,
        "client_addr": "127.0.0.1",
        "request_id": "req-1",
    } | changes


def _read_back(runtime: Runtime, row_id: uuid.UUID) -> dict[str, Any]:
    with runtime.session_factory() as session:
        entry = session.get(AccessLogEntry, row_id)
        assert entry is not None
        return {c.key: getattr(entry, c.key) for c in AccessLogEntry.__table__.columns}


def test_a_compiled_insert_writes_what_sqlalchemy_writes(runtime: Runtime) -> None:
    engine = runtime.read_log_engine
    fast_row = _row(runtime)
    if engine.dialect.name != "sqlite":
        assert compiled_insert(engine, INSERT, fast_row) is None  # SQLAlchemy's path there
        return
    compiled = compiled_insert(engine, INSERT, fast_row)
    assert compiled is not None
    commit_statement(engine, INSERT, fast_row)
    slow_row = fast_row | {"id": uuid.uuid4()}
    with engine.begin() as connection:
        connection.execute(INSERT, slow_row)
    fast, slow = _read_back(runtime, fast_row["id"]), _read_back(runtime, slow_row["id"])
    assert fast.pop("id") != slow.pop("id")
    assert fast == slow
    assert fast["at"].replace(tzinfo=UTC) == fast_row["at"]
    assert fast["user_pk"] == fast_row["user_pk"]


def test_a_statement_needing_python_defaults_is_left_to_sqlalchemy(runtime: Runtime) -> None:
    row = _row(runtime)
    del row["id"], row["at"]  # both have defaults computed in Python
    assert compiled_insert(runtime.read_log_engine, INSERT, row) is None
    commit_statement(runtime.read_log_engine, INSERT, row)
    with runtime.session_factory() as session:
        [entry] = session.scalars(
            select(AccessLogEntry).where(AccessLogEntry.request_id == "req-1")
        )
    assert entry.id is not None and entry.at is not None


def test_a_database_error_is_sqlalchemys_and_writes_nothing(runtime: Runtime) -> None:
    row = _row(runtime, user_pk=uuid.uuid4())  # no such user: the foreign key refuses it
    with pytest.raises(IntegrityError):
        commit_statement(runtime.read_log_engine, INSERT, row)
    with runtime.session_factory() as session:
        assert session.get(AccessLogEntry, row["id"]) is None


def test_a_driver_transaction_commits_all_its_rows_or_none(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("driver transactions are SQLite's")
    kept, dropped, refused = _row(runtime), _row(runtime), _row(runtime, user_pk=uuid.uuid4())
    with sqlite_driver_transaction(runtime.engine) as transaction:
        transaction.execute(INSERT, [kept])
    with pytest.raises(IntegrityError), sqlite_driver_transaction(runtime.engine) as transaction:
        transaction.execute(INSERT, [dropped])  # written, then undone with the failure after it
        transaction.execute(INSERT, [refused])  # no such user: the foreign key refuses it
    with runtime.session_factory() as session:
        assert session.get(AccessLogEntry, kept["id"]) is not None
        assert session.get(AccessLogEntry, dropped["id"]) is None
    # The write turn and the connection were given back: a session writes at once.
    later = _row(runtime)
    with session_scope(runtime.session_factory) as session:
        session.execute(INSERT, [later])


def test_a_compiled_query_reads_what_sqlalchemy_reads(runtime: Runtime) -> None:
    """A list bound to an IN (expanding), a value the statement holds itself (``!= ""``),
    and each column converted back (UUIDs, times), as QIDO's searches need them."""
    engine = runtime.read_log_engine
    if engine.dialect.name != "sqlite":
        pytest.skip("compiled queries are SQLite's")
    rows = [_row(runtime, request_id=f"req-{n}", client_addr=addr) for n, addr in enumerate("ab ")]
    for row in rows:
        commit_statement(engine, INSERT, row)
    query = (
        select(AccessLogEntry.id, AccessLogEntry.at, AccessLogEntry.request_id)
        .where(
            AccessLogEntry.id.in_(bindparam("ids", expanding=True)),
            AccessLogEntry.client_addr != " ",  # a literal: the compiled statement binds it
        )
        .order_by(AccessLogEntry.request_id)
    )
    wanted = {"ids": [row["id"] for row in rows]}
    with engine.connect() as connection:
        expected = [list(r) for r in connection.execute(query, wanted)]
    with driver_connection(engine) as connection:
        compiled = compiled_query(engine, query)
        found = compiled.all(connection, wanted)
        one = compiled.all(connection, {"ids": [rows[1]["id"]]})  # another list length
    assert found == expected
    assert [r[0] for r in found] == [rows[0]["id"], rows[1]["id"]]  # the third is " "
    assert found[0][1].replace(tzinfo=UTC) == rows[0]["at"]
    assert [r[2] for r in one] == ["req-1"]


def test_compiled_queries_are_bounded(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients choose QIDO's search shapes, each its own statement: the cache must not grow
    without end."""
    engine = runtime.read_log_engine
    if engine.dialect.name != "sqlite":
        pytest.skip("compiled queries are SQLite's")
    monkeypatch.setattr(sqlite_compiled, "MAX_COMPILED_QUERIES", 3)
    queries = [select(AccessLogEntry.id).where(AccessLogEntry.result_count == n) for n in range(5)]
    compiled = [compiled_query(engine, q) for q in queries]
    assert len(sqlite_compiled._queries[engine]) == 3
    assert compiled_query(engine, queries[-1]) is compiled[-1]  # the newest is kept
    assert compiled_query(engine, queries[0]) is not compiled[0]  # the oldest was dropped
