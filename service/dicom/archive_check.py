"""Does the archive hold what the index says? Lost files, changed files, and stray files.

A stored instance is a row and a file. Storing files before it commits, so a crash, a failed
commit whose clean-up could not run, or a full disk can leave a stray file that no row
points to: harmless, but it takes space. A row whose file is missing, or whose file's bytes
changed, is lost or corrupted data, which an archive must find before a clinician does.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.dicom.archive import INCOMING, Archive
from service.dicom.store import remove_unclaimed
from service.dicom.uids import is_valid_uid
from service.orm import Instance

# A stray younger than this may be a store in progress (filed, not yet committed): kept.
STRAY_GRACE_S = 3600.0
_HASH_CHUNK = 1 << 20
_LOOKUP_BATCH = 500


@dataclass
class ArchiveReport:
    """What a check found; paths are relative to the archive root."""

    rows: int = 0
    files: int = 0
    missing: list[str] = field(default_factory=list)  # a row's file is gone
    changed: list[str] = field(default_factory=list)  # a row's file has other bytes
    strays: list[str] = field(default_factory=list)  # a file no row points to
    removed: list[str] = field(default_factory=list)  # strays deleted by this check

    @property
    def data_lost(self) -> bool:
        return bool(self.missing or self.changed)


def check_archive(
    session_factory: sessionmaker[Session],
    archive: Archive,
    *,
    verify: bool = False,
    remove_strays: bool = False,
    grace_s: float = STRAY_GRACE_S,
    own_folders: Iterable[Path] = (),
) -> ArchiveReport:
    """Compare the index with the files; ``verify`` also re-hashes every file (reads the
    whole archive); ``remove_strays`` deletes strays untouched for ``grace_s`` seconds.
    ``own_folders``: Vigil's other folders (its var folder, the analyses' results), left out
    where they lie inside the archive's folder (docker-compose.yml puts var there).

    The rows are read before the files are listed: a store committed in between shows as a
    stray candidate, and candidates are looked up again before they are reported.
    """
    report = ArchiveReport()
    expected: dict[str, tuple[str, int]] = {}  # relative path -> (SHA-256, size)
    with session_factory() as session:
        query = select(Instance.file_path, Instance.sha256, Instance.file_size)
        for file_path, sha256, size in session.execute(query.execution_options(yield_per=1000)):
            expected[file_path] = (sha256, size)
    report.rows = len(expected)
    present = set(_archive_files(archive, own_folders))
    report.files = len(present)
    for relative, (sha256, size) in sorted(expected.items()):
        if relative not in present:
            report.missing.append(relative)
        elif verify and not _same_bytes(archive.path(relative), sha256, size):
            report.changed.append(relative)
    candidates = sorted(present - expected.keys())
    report.strays = _still_unclaimed(session_factory, candidates)
    if remove_strays:
        report.removed = _remove_old_strays(session_factory, archive, report.strays, grace_s)
    return report


def _archive_files(archive: Archive, own_folders: Iterable[Path] = ()) -> Iterator[str]:
    """Yield the relative path of every file in the archive, the inbox and Vigil's other
    folders left out."""
    root = archive.root.resolve()
    left_out = {INCOMING} | {
        folder.resolve().relative_to(root).as_posix()
        for folder in own_folders
        if folder.resolve().is_relative_to(root) and folder.resolve() != root
    }
    for directory, folders, names in os.walk(archive.root):
        here = os.path.relpath(directory, archive.root).replace(os.sep, "/")
        folders[:] = [f for f in folders if (f if here == "." else f"{here}/{f}") not in left_out]
        for name in names:
            full = os.path.join(directory, name)
            yield os.path.relpath(full, archive.root).replace(os.sep, "/")


def _same_bytes(path: Path, sha256: str, size: int) -> bool:
    digest = hashlib.sha256()
    read = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
                read += len(chunk)
    except OSError:
        return False
    return read == size and digest.hexdigest() == sha256


def _still_unclaimed(session_factory: sessionmaker[Session], candidates: list[str]) -> list[str]:
    """Return the candidates no row points to now."""
    claimed: set[str] = set()
    with session_factory() as session:
        for start in range(0, len(candidates), _LOOKUP_BATCH):
            batch = candidates[start : start + _LOOKUP_BATCH]
            query = select(Instance.file_path).where(Instance.file_path.in_(batch))
            claimed.update(session.scalars(query))
    return [c for c in candidates if c not in claimed]


def _remove_old_strays(
    session_factory: sessionmaker[Session], archive: Archive, strays: list[str], grace_s: float
) -> list[str]:
    """Delete strays Vigil filed (``<study>/<series>/<sop>.dcm``) untouched for ``grace_s``.

    Each goes under its instance's lock, and only while no row holds that instance (as a
    failed store's clean-up does): a store filing the same instance meanwhile keeps its file.
    Files of other shapes were not filed by Vigil: they are reported, never deleted.
    """
    cutoff = time.time() - grace_s
    old: list[tuple[str, str]] = []
    for relative in strays:
        sop = _filed_sop_instance_uid(relative)
        if sop is None:
            continue
        try:
            if archive.path(relative).stat().st_mtime < cutoff:
                old.append((sop, relative))
        except FileNotFoundError:
            continue
    remove_unclaimed(session_factory, archive, old)
    return [relative for _sop, relative in old if not archive.path(relative).exists()]


def _filed_sop_instance_uid(relative: str) -> str | None:
    """Return the SOP Instance UID of a path shaped as Vigil files instances, else None."""
    parts = relative.split("/")
    if len(parts) != 3 or not parts[2].endswith(".dcm"):
        return None
    uids = [parts[0], parts[1], parts[2].removesuffix(".dcm")]
    return uids[2] if all(is_valid_uid(uid) for uid in uids) else None
