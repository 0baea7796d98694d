"""A consistent copy of a live SQLite database (``vigil db backup``), safe while it serves.

Copying vigil.db with cp while the server writes can catch a page half-updated, and leaves
out what is still in vigil.db-wal. SQLite's online backup copies one consistent snapshot
(the WAL's committed pages included) without stopping writers. The copy is written beside
its destination, checked (``PRAGMA integrity_check``), made a single self-contained file
(rollback journal, not WAL), flushed to disk, and only then renamed into place.

The archive's files are written once and never changed, and each is on disk before the row
that names it: back up the database first and the archive folder after, and every row of
the copy has its file in the archive's copy.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from service.dicom.archive import fsync_path


class BackupFailed(RuntimeError):
    """The copy could not be made or did not check out; nothing was left at the destination."""


def backup_sqlite(source: Path, destination: Path) -> int:
    """Copy the database at ``source`` to ``destination`` (a new file); return how many
    instances the copy indexes."""
    if destination.exists():
        raise BackupFailed(f"{destination} already exists: give a new file")
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        live = _connect(f"file:{source}?mode=ro", uri=True)
        with closing(live), closing(_connect(partial)) as copy:
            live.backup(copy)
            [check] = copy.execute("PRAGMA integrity_check").fetchone()
            if check != "ok":
                raise BackupFailed(f"the copy failed its integrity check: {check}")
            copy.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
            [instances] = copy.execute("SELECT count(*) FROM instances").fetchone()
        fsync_path(partial)
        partial.rename(destination)
        fsync_path(destination.parent)  # the rename, too, is on disk
    except sqlite3.Error as exc:
        raise BackupFailed(f"the copy could not be made: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return int(instances)


def _connect(target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
    connection = sqlite3.connect(target, uri=uri, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=30000")
    return connection
