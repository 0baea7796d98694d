"""Early write-back of incoming files: a hint to the disk that changes no byte."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
from pathlib import Path

import pytest

from service.dicom import archive as archive_module
from service.dicom import writeback
from service.dicom.archive import Archive
from service.dicom.parse import parse_plain_file
from service.dicom.plain_header import HEAD_BYTES
from tests.factories import make_cr, to_bytes


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


def test_a_large_incoming_file_is_written_back_as_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An 8 MB instance arrives over tens of milliseconds: the disk should be writing its
    # first megabytes meanwhile, not all of it at the fsync that answers the request.
    asked_at: list[int] = []  # bytes on disk (flushed from Python) at each request to write
    monkeypatch.setattr(
        archive_module, "start_writeback", lambda fd: asked_at.append(os.fstat(fd).st_size)
    )
    archive = Archive(tmp_path / "archive", fsync=True)
    data = os.urandom(3 * archive_module.WRITEBACK_STEP_BYTES + 4096)
    writer = archive.writer(len(data))
    for start in range(0, len(data), 65536):
        writer.write(data[start : start + 65536])
    before_finish = list(asked_at)
    received = writer.finish()
    step = archive_module.WRITEBACK_STEP_BYTES
    assert before_finish == [step, 2 * step, 3 * step]
    assert asked_at[-1] == len(data)  # and the rest at the end
    assert received.path.read_bytes() == data


def test_a_small_file_or_a_scratch_archive_asks_no_early_write_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    monkeypatch.setattr(archive_module, "start_writeback", asked.append)
    small = Archive(tmp_path / "durable", fsync=True).writer(1 << 30)
    small.write(os.urandom(512 * 1024))
    assert asked == []
    small.finish()
    assert len(asked) == 1  # once, at the end
    scratch = Archive(tmp_path / "scratch", fsync=False).writer(1 << 30)
    for _ in range(3):
        scratch.write(os.urandom(archive_module.WRITEBACK_STEP_BYTES))
    scratch.finish()
    assert len(asked) == 1  # nothing is fsynced there, so nothing is hurried either


def _resident_pages(path: Path) -> list[bool]:
    """Which of a file's pages are in the page cache (mincore on a read-only mapping)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    page = os.sysconf("SC_PAGE_SIZE")
    flags = (ctypes.c_ubyte * ((size + page - 1) // page))()
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            assert libc.mincore(address, size, flags) == 0, ctypes.get_errno()
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return [bool(flag & 1) for flag in flags]


def _file_system_type(path: Path) -> str:
    """The type of the file system holding ``path`` (Linux: the longest mount point)."""
    best, kind = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _device, mount_point, fs_type, *_rest = line.split()
        inside = str(path).startswith(mount_point.rstrip("/") + "/") or str(path) == mount_point
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fs_type
    return kind


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="posix_fadvise and mincore")
@pytest.mark.parametrize("chunk_bytes", [100, 65536, 1 << 20])
def test_a_synced_incoming_file_leaves_the_page_cache_and_its_head_stays_in_memory(
    tmp_path: Path, chunk_bytes: int
) -> None:
    if _file_system_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("a file in memory has no disk copy: its pages cannot leave the cache")
    # Once on disk, an instance's bytes need not stay in the page cache (and on a virtual
    # machine each new page of cache costs a host fault); storing it reads its header, which
    # the writer kept in memory.
    archive = Archive(tmp_path / "archive", fsync=True)
    data = os.urandom(3 * 1024 * 1024 + 5000)
    writer = archive.writer(len(data))
    for start in range(0, len(data), chunk_bytes):
        writer.write(memoryview(data)[start : start + chunk_bytes])
    received = writer.finish()
    assert received.head == data[:HEAD_BYTES]
    assert all(_resident_pages(received.path))  # written, not yet synced: all cached
    archive.sync(received)
    assert not any(_resident_pages(received.path))
    assert received.path.read_bytes() == data  # nothing lost: read back from the disk


def test_a_file_shorter_than_the_head_is_kept_whole(tmp_path: Path) -> None:
    writer = Archive(tmp_path / "archive", fsync=True).writer(1 << 20)
    writer.write(b"DICM" * 10)
    assert writer.finish().head == b"DICM" * 10


def test_storing_reads_a_plain_header_from_memory_not_from_the_file(tmp_path: Path) -> None:
    # The file's pages have left the cache: reading them back would wait for the disk.
    payload = to_bytes(make_cr(seed=11))
    writer = Archive(tmp_path / "archive", fsync=True).writer(1 << 30)
    writer.write(payload)
    received = writer.finish()
    on_disk = parse_plain_file(received.path)
    assert received.head is not None
    received.path.write_bytes(b"not what was received")  # the header must not come from here
    from_memory = parse_plain_file(received.path, known=(received.head, received.size))
    assert on_disk is not None and from_memory is not None
    assert from_memory.instance == on_disk.instance
    assert from_memory.dicom_json == on_disk.dicom_json
