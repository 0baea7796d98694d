"""Early write-back of incoming files: a hint to the disk that changes no byte."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from service.dicom import writeback
from service.dicom.archive import Archive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_sync_file_range_is_found_on_linux() -> None:
    # Without it the hint silently does nothing and every fsync waits for the whole file.
    assert writeback._start is not None


def test_a_durable_archive_keeps_every_byte_of_an_incoming_file(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    archive = Archive(tmp_path / "archive", fsync=True)
    writer = archive.writer(len(data))
    for start in range(0, len(data), 65536):
        writer.write(memoryview(data)[start : start + 65536])
    received = writer.finish()
    archive.sync(received)
    assert received.path.read_bytes() == data
    assert received.size == len(data)


def test_write_back_of_a_closed_descriptor_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    os.close(fd)
    writeback.start_writeback(fd)  # EBADF: a hint that failed, not an error
    assert path.read_bytes() == b"x"
