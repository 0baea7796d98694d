"""A database that is down, restarting or locked answers 503 with a reason and Retry-After (a
client retries), not a 500 "unexpected error"; and nothing stored is lost meanwhile."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.app import create_app
from service.auth.roles import Role
from service.db import database_unavailable
from service.error_handlers import RETRY_AFTER_S
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import POSTGRES_URL, bearer
from tests.factories import make_cr, to_bytes
from tests.review_support import add_people, log_in
from tests.test_stow import stow


def wrapped(driver_error: Exception) -> OperationalError:
    return OperationalError("SELECT 1", {}, driver_error)


def sqlite_error(tmp_path: Path, sql: str, lock: bool = False) -> sqlite3.Error:
    path = tmp_path / "lock.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    if lock:
        holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        other.close()
        holder.close()
    raise AssertionError(f"{sql} did not fail")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_errors_that_mean_not_now_are_told_apart_from_the_programs_own(tmp_path: Path) -> None:
    locked = sqlite_error(tmp_path, "INSERT INTO t VALUES (1)", lock=True)
    assert database_unavailable(wrapped(locked))
    no_table = sqlite_error(tmp_path, "SELECT * FROM missing")
    assert not database_unavailable(wrapped(no_table))
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{closed_port()}/x", connect_timeout=5)
    assert database_unavailable(wrapped(refused.value))
    assert database_unavailable(refused.value)  # the token lookup's own connections
    assert not database_unavailable(ValueError("database is locked"))


@contextmanager
def connections_refused(url: str) -> Iterator[None]:
    """Refuse new connections to the test database and end the open ones (as a restart does)."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )
        try:
            yield
        finally:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    admin.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="set VIGIL_TEST_DATABASE_URL for PostgreSQL")
def test_a_database_that_cannot_be_reached_answers_503_and_then_recovers(
    settings: Settings, tokens: dict[Role, str], runtime: Runtime
) -> None:
    stored, later = make_cr(), make_cr()
    instance_url = (
        f"/dicomweb/studies/{stored.StudyInstanceUID}/series/{stored.SeriesInstanceUID}"
        f"/instances/{stored.SOPInstanceUID}"
    )
    reader = bearer(tokens[Role.CLINICIAN])
    people = add_people(runtime, [Role.CLINICIAN])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert stow(client, tokens[Role.INTEGRATION], [to_bytes(stored)]).status_code == 200
        assert log_in(client, people[Role.CLINICIAN]).status_code == 303
        with connections_refused(settings.database_url):
            page = client.get("/review")  # the login's session is looked up: an error page
            assert page.status_code == 503 and "text/html" in page.headers["content-type"]
            assert "the database cannot be reached or is busy" in page.text
            answers = [
                client.get("/api/v1/me", headers=reader),
                client.get("/dicomweb/studies", headers=reader),
                client.get(instance_url, headers=reader),
                stow(client, tokens[Role.INTEGRATION], [to_bytes(later)]),
            ]
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert "the database cannot be reached or is busy" in answer.json()["detail"]
                assert answer.headers["retry-after"] == str(RETRY_AFTER_S)
            assert client.get("/readyz").status_code == 503
        # Back: the stored instance is whole, and the refused one can be sent again.
        assert client.get(instance_url, headers=reader).content.count(to_bytes(stored)) == 1
        assert stow(client, tokens[Role.INTEGRATION], [to_bytes(later)]).status_code == 200
