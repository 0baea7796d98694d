"""Result objects made ready for filing: written to the archive's incoming folder, fsynced and
parsed, so that filing them is only the database transaction and a rename.

The helper process prepares the objects it builds this way: a file path and the parsed
attributes go back to the server instead of megabytes of bytes through a pipe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from service.dicom.archive import Archive, ReceivedFile
from service.dicom.parse import ParsedInstance, parse_instance
from service.results.output_dataset import to_part10_bytes


@dataclass(frozen=True)
class IncomingPlace:
    """Where another process writes prepared files: the archive's root and its rules."""

    root: Path
    fsync: bool
    max_bytes: int

    def archive(self) -> Archive:
        return Archive(self.root, fsync=self.fsync)


@dataclass(frozen=True)
class PreparedObject:
    received: ReceivedFile
    parsed: ParsedInstance


def prepare(archive: Archive, max_bytes: int, dataset: Dataset) -> PreparedObject:
    """Write ``dataset`` as Part 10 to the incoming folder, fsync it and parse it; raise
    ``InstanceRejected`` or ``PayloadTooLarge`` (leaving no file) when it cannot be stored."""
    writer = archive.writer(max_bytes)
    try:
        writer.write(to_part10_bytes(dataset))
        received = writer.finish()
    except BaseException:
        writer.abort()
        raise
    try:
        archive.sync(received)
        parsed = parse_instance(received.path, require_image=False, dataset=dataset)
    except BaseException:
        received.path.unlink(missing_ok=True)
        raise
    return PreparedObject(received, parsed)


def discard(objects: Iterable[PreparedObject]) -> None:
    """Remove prepared files that will not be filed."""
    for prepared in objects:
        prepared.received.path.unlink(missing_ok=True)
