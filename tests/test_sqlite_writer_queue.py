"""SQLite writers of several processes take turns on a lock file, not by sleeping and retrying.

SQLite's own busy handler makes a waiting writer sleep 1, 2, 5 ... 100 ms between tries, so a
second server process (or a ``vigil ingest`` beside the server) would stall for up to 100 ms
behind every write of the first. Writers queue on an flock of ``<database>-writer.lock``
instead and go the moment the turn is free.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from service import db
from service.db import _sqlite_writer, commit_statement, create_db_engine

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

_OTHER_WRITER = textwrap.dedent(
    """
    import sys, time
    from sqlalchemy import text
    from service.db import commit_statement, create_db_engine
    engine = create_db_engine(sys.argv[1])
    print("ready", flush=True)
    commit_statement(engine, text("INSERT INTO t (v) VALUES ('other')"), {})
    print("written", time.time(), flush=True)
    """
)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    commit_statement(engine, text("CREATE TABLE t (v TEXT)"), {})
    yield engine
    engine.dispose()


def test_a_writer_in_another_process_waits_for_the_turn_and_then_writes(
    sqlite_engine: Engine,
) -> None:
    url = str(sqlite_engine.url)
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_WRITER, url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert other.stdout is not None
        with _sqlite_writer(sqlite_engine):
            # No SQLite transaction is open here: only the lock file makes the other wait.
            assert other.stdout.readline().strip() == "ready"
            time.sleep(1.0)
            assert other.poll() is None, "the other process wrote while this one held the turn"
            released_at = time.time()
        line = other.stdout.readline().split()
        assert other.wait(timeout=30) == 0
    finally:
        if other.poll() is None:
            other.kill()
    assert line[0] == "written"
    # It went as soon as the turn was free (a retrying busy handler would sleep first).
    assert float(line[1]) - released_at < 0.5
    with sqlite_engine.connect() as connection:
        assert connection.execute(text("SELECT v FROM t")).scalars().all() == ["other"]


def test_the_lock_file_sits_beside_the_database(sqlite_engine: Engine) -> None:
    database = Path(str(sqlite_engine.url.database))
    commit_statement(sqlite_engine, text("INSERT INTO t (v) VALUES ('x')"), {})
    assert Path(f"{database}-writer.lock").exists()


def test_lock_files_of_databases_no_longer_written_are_closed(tmp_path: Path) -> None:
    engines = [create_db_engine(f"sqlite:///{tmp_path / f'db{n}.db'}") for n in range(12)]
    try:
        for engine in engines:
            commit_statement(engine, text("CREATE TABLE t (v TEXT)"), {})
        kept = dict(db._writer_lock_files)
        assert len(kept) == db._WRITER_LOCK_FILES_KEPT
        newest = {str(engine.url.database) for engine in engines[-db._WRITER_LOCK_FILES_KEPT :]}
        assert {database for _pid, database in kept} == newest
        for fd in kept.values():
            os.fstat(fd)  # still open
    finally:
        for engine in engines:
            engine.dispose()
