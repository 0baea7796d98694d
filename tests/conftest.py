"""Test fixtures: a migrated database per test (SQLite file, or PostgreSQL when
VIGIL_TEST_DATABASE_URL is set), an archive folder, the app, and one token per role."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from service.app import create_app
from service.auth import service as auth_service
from service.auth.roles import Role
from service.db import session_scope
from service.loop_database import LoopDatabase, open_loop_database
from service.migrate import upgrade
from service.orm import Base
from service.runtime import Runtime, open_runtime
from service.settings import Environment, Settings
from tests.factories import stow_headers

POSTGRES_URL = os.environ.get("VIGIL_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("VIGIL_TEST_REDIS_URL", "")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "vigil.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    """The test database, emptied of whatever an earlier run (perhaps of another checkout,
    with other migrations) left there, then migrated to this checkout's head."""
    assert POSTGRES_URL
    _reset_postgres_schema(POSTGRES_URL)
    upgrade(POSTGRES_URL)
    return POSTGRES_URL


def _reset_postgres_schema(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        # TRUNCATE does not fire the access log's row triggers (which refuse DELETE).
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's own empty, migrated database."""
    if POSTGRES_URL:
        url: str = request.getfixturevalue("postgres_migrated")
        _truncate_postgres(url)
        return url
    template: Path = request.getfixturevalue("sqlite_template")
    shutil.copy(template, tmp_path / "vigil.db")
    return f"sqlite:///{tmp_path / 'vigil.db'}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        environment=Environment.TEST,
        var_dir=tmp_path,
        database_url=database_url,
        archive_dir=tmp_path / "archive",
        log_json=True,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = open_runtime(settings, migrate=False)
    yield rt
    rt.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def loop_db(settings: Settings) -> Iterator[LoopDatabase]:
    """The event loop's own SQLite connection (``loop_database``), on its own; SQLite only."""
    database = open_loop_database(settings.database_url, durable_read_log=False)
    assert database is not None
    yield database
    database.close()


@pytest.fixture
def tokens(runtime: Runtime) -> dict[Role, str]:
    """One API token per role."""
    out: dict[Role, str] = {}
    with session_scope(runtime.session_factory) as session:
        for role in Role:
            _token, secret = auth_service.create_token(session=session, role=role)
            out[role] = secret
    return out


@pytest.fixture
def integration_token(tokens: dict[Role, str]) -> str:
    return tokens[Role.INTEGRATION]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


__all__ = ["REDIS_URL", "bearer", "stow_headers"]
