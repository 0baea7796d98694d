"""The file store: instances under ``<study>/<series>/<sop>.dcm``, written atomically.

A file is first written to ``.incoming/`` (same file system), fsynced, then renamed into place
and its folder fsynced: a crash leaves either no file or a whole one, never half of one.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from service.dicom.plain_header import HEAD_BYTES
from service.dicom.uids import is_valid_uid
from service.dicom.writeback import release_cached_pages, start_writeback
from service.errors import PayloadTooLarge

INCOMING = ".incoming"
WRITEBACK_STEP_BYTES = 1 << 20  # a large file's disk writing starts at each such step
DISK_FULL_REASON = "no space left on the archive's disk"


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error means the disk (or the user's quota on it) has no room left."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class ReceivedFile:
    """A whole file in the incoming folder, with its size and SHA-256."""

    path: Path
    size: int
    sha256: str
    synced: bool = False  # its bytes are on disk already (``Archive.synced``)
    # Its first HEAD_BYTES (all of it, if shorter), kept from writing it: storing reads the
    # header from here, not from the file, whose pages leave the cache once it is on disk.
    head: bytes | None = None


class IncomingWriter:
    """Write one incoming file chunk by chunk, hashing as it goes and refusing oversize input."""

    def __init__(self, directory: Path, max_bytes: int, *, durable: bool = True) -> None:
        fd, name = tempfile.mkstemp(dir=directory, suffix=".part")
        self._durable = durable
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self.path = Path(name)
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        self.too_large = False
        self._written_back = 0  # bytes up to which the disk was asked to write already
        self._head = bytearray()  # the file's first HEAD_BYTES (``ReceivedFile.head``)

    def write(self, chunk: bytes | memoryview) -> None:
        if self.too_large:
            return  # keep consuming the input, store nothing more
        self.size += len(chunk)
        if self.size > self._max_bytes:
            self.too_large = True
            self._file.truncate(0)
            return
        self._hash.update(chunk)
        if len(self._head) < HEAD_BYTES:
            self._head += memoryview(chunk)[: HEAD_BYTES - len(self._head)]
        self._file.write(chunk)
        if self._durable and self.size - self._written_back >= WRITEBACK_STEP_BYTES:
            # A large body arrives over many milliseconds: the disk writes each megabyte
            # meanwhile, so that the fsync at the end waits for the last one only.
            self._file.flush()
            start_writeback(self._file.fileno())
            self._written_back = self.size

    def finish(self) -> ReceivedFile:
        """Close the file and return it; raise PayloadTooLarge if it went over the limit.

        No fsync here: ``Archive.sync`` does it, outside any database lock. For a durable
        archive the disk starts writing the file now, so that fsync has less to wait for.
        """
        if self._durable and not self.too_large:
            self._file.flush()
            start_writeback(self._file.fileno())
        self._file.close()
        if self.too_large:
            self.path.unlink(missing_ok=True)
            raise PayloadTooLarge(
                # Reading stops at the limit: the size is a lower bound.
                f"instance is over the limit of {self._max_bytes} bytes ({self.size} bytes "
                "read before it was stopped)"
            )
        return ReceivedFile(self.path, self.size, self._hash.hexdigest(), head=bytes(self._head))

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class Archive:
    """Where instance files live; paths stored in the database are relative to ``root``."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root.resolve()
        self._root_text = str(self.root)
        self._root_prefix = os.path.join(self._root_text, "")  # the root and a separator
        self.fsync = fsync
        self.incoming = self.root / INCOMING
        self.incoming.mkdir(parents=True, exist_ok=True)

    def writer(self, max_bytes: int) -> IncomingWriter:
        """Return a writer for one new incoming file."""
        return IncomingWriter(self.incoming, max_bytes, durable=self.fsync)

    def receive_file(self, source: Path, max_bytes: int, chunk_size: int = 1 << 20) -> ReceivedFile:
        """Copy a file into the incoming folder (for the CLI and folder imports)."""
        writer = self.writer(max_bytes)
        try:
            with source.open("rb") as f:
                while chunk := f.read(chunk_size):
                    writer.write(chunk)
                    if writer.too_large:
                        break
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    @staticmethod
    def relative_path(study_uid: str, series_uid: str, sop_uid: str) -> str:
        """Return where an instance is filed; UIDs are checked so no path can escape the root."""
        for uid in (study_uid, series_uid, sop_uid):
            if not is_valid_uid(uid):
                raise ValueError(f"not a valid UID: {uid!r}")
        return f"{study_uid}/{series_uid}/{sop_uid}.dcm"

    def path(self, relative: str) -> Path:
        """Return the absolute path of a stored file; ValueError for one outside the archive.

        Checked on the text of the path (``..`` and absolute paths), without asking the file
        system: stored paths are made of checked UIDs (``relative_path``), and resolving
        each one cost every retrieve a system call per folder level.
        """
        full = os.path.normpath(os.path.join(self._root_text, relative))
        if not full.startswith(self._root_prefix):
            raise ValueError("path escapes the archive")
        return Path(full)

    def sync(self, received: ReceivedFile) -> None:
        """Flush an incoming file's bytes to disk (before it is placed and indexed), then let
        its pages leave the page cache (``release_cached_pages``): its header is in memory."""
        if self.fsync and not received.synced:
            fsync_path(received.path, release_pages=True)

    def synced(self, received: ReceivedFile) -> ReceivedFile:
        """Flush an incoming file's bytes to disk now; return it marked so (``sync`` then has
        nothing to do): for a worker thread to wait for the disk instead of the event loop."""
        self.sync(received)
        return dataclasses.replace(received, synced=True)

    def place(
        self, received: ReceivedFile, relative: str, folders_to_sync: set[Path] | None = None
    ) -> Path:
        """Move a synced incoming file to its place atomically and fsync the folder(s).

        ``folders_to_sync``: add the folders there instead, for the caller to fsync once for
        several files (``sync_folders``) before it commits their rows.
        """
        target = self.path(relative)
        new_dirs = self._make_dirs(target.parent)
        os.replace(received.path, target)
        folders = [target.parent, *new_dirs]
        if folders_to_sync is not None:
            folders_to_sync.update(folders)
        elif self.fsync:
            for directory in folders:
                fsync_path(directory)
        return target

    def sync_folders(self, folders: set[Path]) -> None:
        """Fsync folders that ``place`` left to the caller."""
        if self.fsync:
            for directory in sorted(folders):
                fsync_path(directory)

    def sweep_incoming(self, older_than_s: float) -> int:
        """Delete incoming files untouched for ``older_than_s`` seconds; return how many.

        They are what a crash or a killed process left mid-write: nothing in the database
        points at an incoming file, and a live writer touches its file at every chunk.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in os.scandir(self.incoming):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # its writer finished (or gave up) meanwhile
                continue
        return removed

    def remove(self, relative: str) -> None:
        """Delete a stored file (used to undo a placement whose database commit failed)."""
        self.path(relative).unlink(missing_ok=True)

    def _make_dirs(self, directory: Path) -> list[Path]:
        """Create missing folders; return the parents whose listings changed (to fsync)."""
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        if not missing:
            return []
        directory.mkdir(parents=True, exist_ok=True)
        return [m.parent for m in missing]


def fsync_path(path: Path, *, release_pages: bool = False) -> None:
    """Fsync a file or a folder; ``release_pages``: then let the file's pages leave the page
    cache (its bytes are on disk and will be read rarely)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if release_pages:
            release_cached_pages(fd)
    finally:
        os.close(fd)
