"""What `vigil ingest` reads: files, folders (recursively) and zip files, each member checked.

Zip members are streamed into the archive's inbox, never extracted by name, and a zip that
would expand past the limits (a zip bomb) is refused before and while it is read. Only
regular files are read: a device, pipe or socket named on the command line is refused
unopened (reading /dev/sdb or a pipe would not end), and inside a folder such files and
symbolic links are skipped, each named in the summary, as is a folder with no files.
"""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from service.dicom.archive import DISK_FULL_REASON, Archive, ReceivedFile, is_disk_full
from service.errors import PayloadTooLarge

# What reading a damaged or unusual zip raises: besides BadZipFile, an unsupported version or
# compression method (NotImplementedError), an encrypted member (RuntimeError), a corrupt
# deflate stream (zlib.error), a name not in UTF-8 though flagged so (UnicodeDecodeError).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    zlib.error,
    struct.error,
)


@dataclass(frozen=True)
class SourceLimits:
    max_instance_bytes: int
    max_zip_ratio: int
    max_zip_total_bytes: int
    max_zip_members: int


@dataclass(frozen=True)
class SourceItem:
    """One input: where it came from, and either its received file or why it was refused
    (``skipped``: left alone on purpose, not a failure: a symbolic link in a folder, say)."""

    label: str
    received: ReceivedFile | None = None
    error: str = ""
    skipped: bool = False


NOT_REGULAR = "not a regular file or folder (a device, pipe or socket); not read"
_ZIP_MAGIC = b"PK\x03\x04"


def count_items(paths: list[Path]) -> int:
    """Return how many inputs ``iter_items`` will yield (for a progress bar)."""
    total = 0
    for path in paths:
        for file, skip in _walk(path):
            if skip or not zipfile.is_zipfile(file):
                total += 1
                continue
            try:
                with zipfile.ZipFile(file) as zf:
                    total += max(1, sum(1 for i in zf.infolist() if not i.is_dir()))
            except _ZIP_ERRORS:
                total += 1
    return total


def iter_items(paths: list[Path], archive: Archive, limits: SourceLimits) -> Iterator[SourceItem]:
    """Yield every input file received into the archive's inbox, or refused with a reason."""
    for path in paths:
        for file, skip in _walk(path):
            if skip is not None:
                yield skip
            elif zipfile.is_zipfile(file):
                yield from _iter_zip(file, archive, limits)
            elif _starts_like_a_zip(file):
                yield SourceItem(
                    str(file),
                    error="a damaged zip file: its central directory is missing (cut short "
                    "in copying?); nothing read",
                )
            else:
                yield _receive_path(file, archive, limits)


def _walk(path: Path) -> Iterator[tuple[Path, SourceItem | None]]:
    """Yield each file to read under a path named on the command line, or an item that says
    why it is not read (skipped, inside a folder; refused, when named)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:  # missing, or a dangling symbolic link
        yield path, SourceItem(str(path), error="no such file or folder")
        return
    except OSError as exc:
        yield path, SourceItem(str(path), error=f"cannot read: {exc.strerror or exc}")
        return
    if stat.S_ISREG(mode):
        yield path, None
    elif not stat.S_ISDIR(mode):
        yield path, SourceItem(str(path), error=NOT_REGULAR)
    else:
        found = False
        for entry in sorted(path.rglob("*")):
            if entry.is_dir() and not entry.is_symlink():
                continue  # rglob lists its files
            found = True
            if entry.is_symlink():
                yield entry, _skipped(entry, "a symbolic link; not followed")
            elif entry.is_file():
                yield entry, None
            else:
                yield entry, _skipped(entry, NOT_REGULAR)
        if not found:
            yield path, _skipped(path, "no files in this folder")


def _skipped(path: Path, why: str) -> SourceItem:
    return SourceItem(str(path), error=why, skipped=True)


def _starts_like_a_zip(file: Path) -> bool:
    try:
        with file.open("rb") as f:
            return f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    except OSError:
        return False  # reading it again says why


def _receive_path(file: Path, archive: Archive, limits: SourceLimits) -> SourceItem:
    try:
        received = archive.receive_file(file, limits.max_instance_bytes)
    except PayloadTooLarge as exc:
        return SourceItem(str(file), error=exc.message)
    except OSError as exc:
        if is_disk_full(exc):
            return SourceItem(str(file), error=DISK_FULL_REASON)
        return SourceItem(str(file), error=f"cannot read: {exc.strerror or exc}")
    return SourceItem(str(file), received=received)


def _iter_zip(file: Path, archive: Archive, limits: SourceLimits) -> Iterator[SourceItem]:
    try:
        zf = zipfile.ZipFile(file)
    except _ZIP_ERRORS as exc:
        yield SourceItem(str(file), error=f"not a readable zip file: {exc}")
        return
    with zf:
        members = [info for info in zf.infolist() if not info.is_dir()]
        refusal = _zip_refusal(members, limits)
        if refusal:
            yield SourceItem(str(file), error=refusal)
            return
        budget = limits.max_zip_total_bytes
        for info in members:
            label = f"{file}!{info.filename}"
            if _escapes(info.filename):
                yield SourceItem(
                    label, error="zip member path escapes the target folder (zip slip); skipped"
                )
                continue
            if info.flag_bits & 0x1:
                yield SourceItem(label, error="zip member is encrypted; skipped")
                continue
            item = _receive_member(zf, info, archive, limits, budget)
            if item.received is not None:
                budget -= item.received.size
            yield item


def _zip_refusal(members: list[zipfile.ZipInfo], limits: SourceLimits) -> str:
    if len(members) > limits.max_zip_members:
        return f"zip holds {len(members)} files, over the limit of {limits.max_zip_members}"
    declared = sum(i.file_size for i in members)
    compressed = max(1, sum(i.compress_size for i in members))
    if declared > limits.max_zip_total_bytes:
        return (
            f"zip would expand to {declared} bytes, over the limit of "
            f"{limits.max_zip_total_bytes} (zip bomb?); nothing extracted"
        )
    if declared / compressed > limits.max_zip_ratio:
        return (
            f"zip expands {declared / compressed:.0f}-fold, over the limit of "
            f"{limits.max_zip_ratio}-fold (zip bomb?); nothing extracted"
        )
    return ""


def _receive_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    archive: Archive,
    limits: SourceLimits,
    budget: int,
) -> SourceItem:
    label = f"{zf.filename}!{info.filename}"
    # Declared sizes can lie: count what actually comes out and stop at the limits.
    allowed = min(limits.max_instance_bytes, budget, info.file_size)
    writer = archive.writer(allowed)
    try:
        with zf.open(info) as member:
            while chunk := member.read(1 << 20):
                writer.write(chunk)
                if writer.too_large:
                    break
        return SourceItem(label, received=writer.finish())
    except PayloadTooLarge:
        return SourceItem(
            label,
            error="zip member expands beyond its declared size or the limits (zip bomb?); skipped",
        )
    except _ZIP_ERRORS as exc:
        writer.abort()
        if is_disk_full(exc):
            return SourceItem(label, error=DISK_FULL_REASON)
        return SourceItem(label, error=f"zip member cannot be read: {exc}")
    except BaseException:
        writer.abort()
        raise


def _escapes(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":")
