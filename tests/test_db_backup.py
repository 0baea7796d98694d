"""`vigil db backup`: a consistent copy of the live SQLite database that restores: with the
archive folder copied after it, `vigil archive check` finds every instance whole."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.settings import Settings
from tests.conftest import POSTGRES_URL
from tests.factories import make_cr, to_bytes
from tests.test_cli_errors import run
from tests.test_stow import stow

sqlite_only = pytest.mark.skipif(bool(POSTGRES_URL), reason="a backup of SQLite's file")


@sqlite_only
def test_a_backup_taken_while_serving_restores_whole(
    settings: Settings, client: TestClient, integration_token: str, tmp_path: Path
) -> None:
    for seed in range(3):
        stored = stow(client, integration_token, [to_bytes(make_cr(seed=seed, rows=32))])
        assert stored.status_code == 200
    live = sqlite3.connect(make_url(settings.database_url).database or "")
    live.execute("BEGIN IMMEDIATE")  # a writer in the middle of its transaction
    live.execute("UPDATE instances SET file_size = -1")
    backup = tmp_path / "backups" / "vigil.db"
    backup.parent.mkdir()
    try:
        result = run(settings, {}, "db", "backup", str(backup))
    finally:
        live.rollback()
        live.close()
    assert result.exit_code == 0, result.output
    assert f"backed up to {backup}" in result.output and "3 instances indexed" in result.output
    copy = sqlite3.connect(backup)
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file
    assert copy.execute("SELECT min(file_size) FROM instances").fetchone()[0] > 0  # committed
    copy.close()
    assert sorted(p.name for p in backup.parent.iterdir()) == ["vigil.db"]
    # Restore: the copy and the archive folder copied after it.
    archive = tmp_path / "restored-archive"
    shutil.copytree(settings.archive_path, archive)
    restored = {"VIGIL_DATABASE_URL": f"sqlite:///{backup}", "VIGIL_ARCHIVE_DIR": str(archive)}
    checked = run(settings, restored, "archive", "check", "--verify")
    assert checked.exit_code == 0, checked.output
    assert "0 stored instances whose file is missing" in checked.output


@sqlite_only
def test_an_existing_destination_is_left_alone(settings: Settings, tmp_path: Path) -> None:
    existing = tmp_path / "vigil.db"
    existing.write_bytes(b"yesterday's backup")
    result = run(settings, {}, "db", "backup", str(existing))
    assert result.exit_code == 1
    assert "already exists: give a new file" in result.output
    assert existing.read_bytes() == b"yesterday's backup"


def test_postgresql_is_pointed_to_its_own_tool(settings: Settings, tmp_path: Path) -> None:
    url = {"VIGIL_DATABASE_URL": "postgresql+psycopg://vigil@127.0.0.1:1/vigil"}
    result = run(settings, url, "db", "backup", str(tmp_path / "x.db"))
    assert result.exit_code == 1
    assert "back it up with its own tool (pg_dump -Fc)" in result.output
