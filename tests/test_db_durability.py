"""How long a commit waits: stores until the disk has it; a read's access-log row, by default, not.

On SQLite the flush setting is ``PRAGMA synchronous`` (2 = FULL, 1 = NORMAL), on PostgreSQL
``synchronous_commit``; each is asked from inside the transaction it governs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from service.app import create_app
from service.auth import service as auth_service
from service.auth.roles import Role
from service.db import create_db_engine, create_session_factory, session_scope
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


def _flush_setting(session: Session) -> str:
    if session.get_bind().dialect.name == "sqlite":
        return {2: "full", 1: "normal"}[session.execute(text("PRAGMA synchronous")).scalar_one()]
    return str(session.execute(text("SHOW synchronous_commit")).scalar_one())


def test_a_unit_of_work_waits_for_the_disk_unless_told_not_to(one_connection: Engine) -> None:
    factory = create_session_factory(one_connection)
    sqlite = one_connection.dialect.name == "sqlite"
    with session_scope(factory) as session:
        assert _flush_setting(session) == ("full" if sqlite else "on")
    with session_scope(factory, durable=False) as session:
        assert _flush_setting(session) == ("normal" if sqlite else "off")
    # The same pooled connection, next transaction: back to waiting for the disk.
    with session_scope(factory) as session:
        assert _flush_setting(session) == ("full" if sqlite else "on")


def _relaxed_commits(settings: Settings, durable_read_log: bool) -> tuple[list[str], int]:
    """Store one instance and retrieve it; return the log actions and the relaxed commits."""
    settings = settings.model_copy(
        update={"durable_read_log": durable_read_log, "auto_analyse": False}
    )
    relaxed: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement in ("PRAGMA synchronous=NORMAL", "SET LOCAL synchronous_commit TO OFF"):
            relaxed.append(statement)

    with TestClient(create_app(settings)) as client:
        engine: Engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        with session_scope(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
            _token, secret = auth_service.create_token(session=session, role=Role.INTEGRATION)
        ds = make_cr()
        assert stow(client, secret, [to_bytes(ds)]).status_code == 200
        event.listen(engine, "before_cursor_execute", watch)
        url = (
            f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        response = client.get(url, headers=bearer(secret))
        assert response.status_code == 200
        event.remove(engine, "before_cursor_execute", watch)
        with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
            rows = session.execute(text("SELECT action FROM access_log ORDER BY at"))
            return [r[0] for r in rows], len(relaxed)


def test_a_reads_log_row_is_committed_before_the_answer_without_waiting_for_the_disk(
    settings: Settings,
) -> None:
    actions, relaxed = _relaxed_commits(settings, durable_read_log=False)
    assert actions == ["dicom.store", "dicom.retrieve"]
    assert relaxed == 1


def test_durable_read_log_waits_for_the_disk_as_a_store_does(settings: Settings) -> None:
    actions, relaxed = _relaxed_commits(settings, durable_read_log=True)
    assert actions == ["dicom.store", "dicom.retrieve"]
    assert relaxed == 0
