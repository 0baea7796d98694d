"""Alembic: upgrade → downgrade → upgrade works, and the models match the migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from service.migrate import downgrade, upgrade
from service.orm import Base
from tests.conftest import POSTGRES_URL

# SQLite cannot reflect expression indexes (lower(name)); Alembic says so, and skips them.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning"),
    pytest.mark.filterwarnings("ignore:Skipped unsupported reflection"),
]

EXPECTED_TABLES = {
    "patients",
    "studies",
    "series",
    "instances",
    "users",
    "api_tokens",
    "access_log",
    "analyses",
    "reviews",
    "web_sessions",
    "audit_reports",
    "sanity_checks",
}


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def schema_differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


def roundtrip(url: str) -> None:
    upgrade(url)
    assert table_names(url) == EXPECTED_TABLES
    assert schema_differences(url) == []
    downgrade(url, "base")
    assert table_names(url) == set()
    upgrade(url)
    assert table_names(url) == EXPECTED_TABLES


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path: Path) -> None:
    roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="set VIGIL_TEST_DATABASE_URL for PostgreSQL")
def test_upgrade_downgrade_upgrade_on_postgresql() -> None:
    # A schema of its own, so the shared test database's tables are left alone.
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS migration_roundtrip CASCADE"))
        conn.execute(text("CREATE SCHEMA migration_roundtrip"))
    admin.dispose()
    separator = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{separator}options=-csearch_path%3Dmigration_roundtrip"
    try:
        roundtrip(url)
    finally:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP SCHEMA migration_roundtrip CASCADE"))
        admin.dispose()
