"""WADO-RS retrieve (PS3.18 10.4): find stored instances, plan their transfer syntaxes, read frames.

No web framework here: the endpoints negotiate media types and pass the outcome in.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pack_bits, pixel_array
from pydicom.uid import UID
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from service.db import lookup_connection
from service.dicom import repository
from service.dicom.archive import Archive
from service.dicom.dicom_json import DicomJson, tag_key
from service.dicom.multipart import iter_multipart_files
from service.dicom.repository import StoredFile
from service.dicom.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    is_valid_uid,
)
from service.errors import BadRequest, NotAcceptable, NotFound
from service.log_config import get_logger

log = get_logger(__name__)

OCTET_STREAM = "application/octet-stream"
_AVAILABLE_TRANSFER_SYNTAX_UID = 0x00083002
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# PS3.18 Table 8.7.3-5: the media type of each compressed (encapsulated) transfer syntax.
COMPRESSED_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
_LITTLE_ENDIAN_NATIVE = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN})
# Any transfer syntax: what the client says with transfer-syntax=* (or by leaving it out).
AS_STORED = "*"
# Any media type: what the client says with */*, multipart/* or no Accept header.
ANY = "*/*"
# Retrieves of stored files up to this many bytes go out in one piece, larger ones stream.
WHOLE_BODY_MAX = 4 << 20


@dataclass(frozen=True)
class Target:
    """Where a retrieve points: a study, optionally one series, optionally one instance."""

    study: str
    series: str | None = None
    instance: str | None = None


@dataclass(frozen=True)
class Located:
    """A stored instance found for a retrieve, with the absolute path of its file."""

    instance: StoredFile
    path: Path


@dataclass(frozen=True)
class InstancePart:
    """One part of an instance retrieve: a stored file, sent as is or re-encoded."""

    path: Path
    stored_transfer_syntax: str
    transfer_syntax: str
    stored_size: int

    @property
    def transcode(self) -> bool:
        return self.transfer_syntax != self.stored_transfer_syntax

    @property
    def content_type(self) -> str:
        return f"application/dicom; transfer-syntax={self.transfer_syntax}"


@dataclass(frozen=True)
class FrameEncoding:
    """How frames go back: decoded little-endian bytes, or the stored compressed bitstream."""

    media_type: str
    transfer_syntax: str
    encapsulated: bool

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; transfer-syntax={self.transfer_syntax}"


def check_uids(target: Target) -> None:
    """Raise BadRequest naming the first UID in the URL that is not a valid UID."""
    for level, uid in (
        ("study", target.study),
        ("series", target.series),
        ("instance", target.instance),
    ):
        if uid is not None and not is_valid_uid(uid):
            raise BadRequest(f"the {level} in the URL is not a valid UID (digits and dots)")


def find_instances(
    *, engine: Engine, archive: Archive, target: Target, with_metadata: bool = False
) -> list[Located]:
    """Return the stored instances under a target; NotFound naming the level that is missing.

    ``with_metadata`` loads their DICOM JSON (and skips checking their files, unread then).
    """
    check_uids(target)
    rows = repository.list_stored_files(
        engine,
        study_instance_uid=target.study,
        series_instance_uid=target.series,
        sop_instance_uid=target.instance,
        with_metadata=with_metadata,
    )
    if not rows:
        with lookup_connection(engine) as connection, Session(bind=connection) as session:
            raise NotFound(_not_found_reason(session, target))
    located = [Located(inst, archive.path(inst.file_path)) for inst in rows]
    if not with_metadata:  # metadata comes from the database; only the others read files
        for item in located:
            if not item.path.is_file():
                log.error("wado.file_missing", instance_pk=str(item.instance.id))
                raise NotFound(
                    "a stored instance's file is missing from the archive; tell an admin"
                )
    return located


def _not_found_reason(session: Session, target: Target) -> str:
    """Return why a target has no instances: which of study, series or instance is unknown."""
    study = repository.get_study(session, target.study)
    if study is None:
        return f"no study {target.study} in the archive"
    if target.series is not None:
        series = repository.get_series(session, target.series)
        if series is None or series.study_pk != study.id:
            return f"study {target.study} has no series {target.series}"
    if target.instance is not None:
        return f"series {target.series} of study {target.study} has no instance {target.instance}"
    return f"study {target.study} has no stored instances"


def metadata(located: list[Located]) -> list[DicomJson]:
    """Return the DICOM JSON of each instance, with its Available Transfer Syntax UID.

    Bulk data (Pixel Data and large binary values) is left out: the archive's JSON holds none,
    and Vigil offers no bulk data resource for a BulkDataURI to point at. Frames are fetched
    from ``.../instances/{uid}/frames/{n}``.
    """
    out: list[DicomJson] = []
    for item in located:
        attrs: dict[str, Any] = dict(item.instance.dicom_json or {})
        attrs[tag_key(_AVAILABLE_TRANSFER_SYNTAX_UID)] = {
            "vr": "UI",
            "Value": [item.instance.transfer_syntax_uid],
        }
        out.append(dict(sorted(attrs.items())))
    return out


def plan_instance_parts(located: list[Located], accepted: list[str]) -> list[InstancePart]:
    """Return each instance's part in the first accepted transfer syntax it can be sent in.

    ``accepted`` holds transfer syntax UIDs in the client's order of preference, ``AS_STORED``
    meaning any. A stored file is sent as is when accepted; a compressed or other encoding is
    re-encoded only to Explicit VR Little Endian. NotAcceptable if an instance fits nothing.
    """
    parts: list[InstancePart] = []
    for item in located:
        stored = item.instance.transfer_syntax_uid
        choice = next((ts for ts in accepted if _can_send(stored, ts)), None)
        if choice is None:
            offered = [stored] + [
                ts for ts in (EXPLICIT_VR_LITTLE_ENDIAN,) if ts != stored and _can_send(stored, ts)
            ]
            raise NotAcceptable(
                f"instance {item.instance.sop_instance_uid} can be sent only in transfer syntax "
                f"{' or '.join(offered)}; asked for {', '.join(accepted)}"
            )
        transfer_syntax = stored if choice == AS_STORED else choice
        parts.append(InstancePart(item.path, stored, transfer_syntax, item.instance.file_size))
    return parts


def _can_send(stored: str, wanted: str) -> bool:
    """Return whether a file stored in one transfer syntax can be sent in another."""
    if wanted in (AS_STORED, stored):
        return True
    if wanted != EXPLICIT_VR_LITTLE_ENDIAN:
        return False
    # Big endian is left out: pydicom would write its pixel bytes unswapped.
    return stored in _LITTLE_ENDIAN_NATIVE or (_compressed(stored) and _decodable(stored))


def _compressed(transfer_syntax: str) -> bool:
    """Return whether a transfer syntax encapsulates (compresses) pixel data."""
    try:
        return bool(UID(transfer_syntax).is_compressed)
    except ValueError:  # not a transfer syntax pydicom knows
        return False


def _decodable(transfer_syntax: str) -> bool:
    """Return whether pydicom can decode pixel data in this transfer syntax here."""
    uid = UID(transfer_syntax)
    if not uid.is_transfer_syntax:
        return False
    if not uid.is_compressed:
        return True
    try:
        return bool(get_decoder(uid).is_available)
    except NotImplementedError:
        return False


def whole_instance_body(parts: list[InstancePart], boundary: str) -> bytes | None:
    """Return the body of a small retrieve of files sent as stored; None when it should stream.

    A streamed body costs a hop to a worker thread for every piece; for a few megabytes,
    reading them at once in the endpoint's own thread is faster.
    """
    if any(part.transcode for part in parts) or sum(p.stored_size for p in parts) > WHOLE_BODY_MAX:
        return None
    return b"".join(iter_multipart_files([(p.path, p.content_type) for p in parts], boundary))


def cached_instance_body(parts: list[InstancePart], boundary: str) -> memoryview | None:
    """Return the body of a small retrieve of files sent as stored, read only from the
    operating system's page cache, each file straight into its place in the body; None when
    a file would have to come from the disk (or is to be re-encoded, or the body is larger
    than WHOLE_BODY_MAX): the caller then builds it in a worker thread, where a wait for
    the disk holds up no other request. For the event loop, which must not wait.
    """
    if _READ_NOWAIT is None or any(part.transcode for part in parts):
        return None
    if sum(part.stored_size for part in parts) > WHOLE_BODY_MAX:
        return None
    heads = [
        (
            f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
            f"Content-Length: {part.stored_size}\r\n\r\n"
        ).encode("latin-1")
        for part in parts
    ]
    tail = f"--{boundary}--\r\n".encode("latin-1")
    size = sum(len(head) + part.stored_size + 2 for head, part in zip(heads, parts, strict=True))
    body = memoryview(bytearray(size + len(tail)))
    at = 0
    for head, part in zip(heads, parts, strict=True):
        body[at : at + len(head)] = head
        at += len(head)
        if not _read_cached(part.path, body[at : at + part.stored_size]):
            return None
        at += part.stored_size
        body[at : at + 2] = b"\r\n"
        at += 2
    body[at:] = tail
    return body


# Linux: a read that takes only what the page cache holds, never waiting for the disk.
_READ_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def _read_cached(path: Path, into: memoryview) -> bool:
    """Fill ``into`` with the whole file if the page cache holds all of it; else False."""
    if _READ_NOWAIT is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # the worker thread's read reports it
    try:
        if os.fstat(fd).st_size != len(into):
            return False
        return os.preadv(fd, [into], 0, _READ_NOWAIT) == len(into)
    except OSError:  # BlockingIOError: not all cached; EOPNOTSUPP: a file system without it
        return False
    finally:
        os.close(fd)


def iter_instance_body(parts: list[InstancePart], boundary: str) -> Iterator[bytes]:
    """Yield the multipart/related body of an instance retrieve, re-encoding where planned.

    Re-encoding happens while streaming, one instance at a time, so a large study never sits
    decompressed in memory all at once.
    """
    if not any(part.transcode for part in parts):
        yield from iter_multipart_files([(p.path, p.content_type) for p in parts], boundary)
        return
    for part in parts:
        payload = explicit_little_endian(part.path) if part.transcode else part.path.read_bytes()
        yield (
            f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1")
        yield payload
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")


def explicit_little_endian(path: Path) -> bytes:
    """Return a stored file re-encoded as Explicit VR Little Endian, its pixels decompressed.

    The SOP Instance UID is kept: the transfer syntax is an encoding, not a new instance.
    """
    ds = pydicom.dcmread(path, force=True)  # stored files were checked at ingest
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return out.getvalue()


def parse_frame_list(text: str, number_of_frames: int) -> list[int]:
    """Return 1-based frame numbers from ``1`` or ``1,3``; 400 if malformed or repeated (a
    short URL repeating one frame thousands of times asked for gigabytes), 404 if absent."""
    numbers: list[int] = []
    listed: set[int] = set()
    for field in text.split(","):
        field = field.strip()
        if not field.isdigit() or int(field) < 1:
            raise BadRequest("frames must be a comma-separated list of frame numbers from 1")
        number = int(field)
        if number in listed:
            raise BadRequest(f"frame {number} is listed more than once; list each frame once")
        listed.add(number)
        numbers.append(number)
    missing = [n for n in numbers if n > number_of_frames]
    if missing:
        raise NotFound(
            f"frame {missing[0]} does not exist: the instance has {number_of_frames} frame(s)"
        )
    return numbers


def choose_frame_encoding(
    stored_transfer_syntax: str, accepted: list[tuple[str, str | None]]
) -> FrameEncoding:
    """Return the first accepted (media type, transfer syntax) the stored frames can be sent in.

    Media types are the part types the client accepts, ``ANY`` for ``*/*``; a transfer syntax
    of None means the parameter was absent. ``application/octet-stream`` means decoded pixels
    in Explicit VR Little Endian. The stored compressed bitstream goes back when the client
    names its media type (``image/jp2``...) or asks for ``transfer-syntax=*``. Vigil never
    compresses frames. NotAcceptable if nothing fits.
    """
    stored_media = COMPRESSED_MEDIA_TYPES.get(stored_transfer_syntax)
    stored = (
        None
        if stored_media is None
        else FrameEncoding(stored_media, stored_transfer_syntax, encapsulated=True)
    )
    decoded = FrameEncoding(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN, encapsulated=False)
    can_decode = _decodable(stored_transfer_syntax)
    for media_type, transfer_syntax in accepted:
        if stored is not None and _wants_stored(media_type, transfer_syntax, stored):
            return stored
        wants_decoded = media_type in (ANY, OCTET_STREAM) and transfer_syntax in (
            None,
            AS_STORED,
            EXPLICIT_VR_LITTLE_ENDIAN,
        )
        if wants_decoded and can_decode:
            return decoded
        if media_type == ANY and stored is not None:
            return stored  # no decoder here, and the client takes anything
    offered = " or ".join(
        ([stored_media] if stored_media else []) + ([OCTET_STREAM] if can_decode else [])
    )
    if not offered:
        raise NotAcceptable(f"frames stored as {stored_transfer_syntax} cannot be decoded here")
    raise NotAcceptable(
        f"frames stored as {stored_transfer_syntax} can be sent only as "
        f'multipart/related; type="{offered}"'
    )


def _wants_stored(media_type: str, transfer_syntax: str | None, stored: FrameEncoding) -> bool:
    """Return whether an accepted media range asks for the stored compressed bitstream."""
    if media_type == stored.media_type:
        return transfer_syntax in (None, AS_STORED, stored.transfer_syntax)
    return media_type == OCTET_STREAM and transfer_syntax == AS_STORED


def read_dataset(located: Located) -> Dataset:
    """Return the stored file of an instance, read whole (pixels included)."""
    # force: files written without a preamble were accepted (and checked) at ingest.
    return pydicom.dcmread(located.path, force=True)


def frame_payloads(ds: Dataset, numbers: list[int], encoding: FrameEncoding) -> list[bytes]:
    """Return the bytes of each 1-based frame, decoded or as the stored bitstream."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise NotFound("the instance has no pixel data, so no frames")
    if encoding.encapsulated:
        return [_encapsulated_frame(ds, n - 1) for n in numbers]
    return [_decoded_frame(ds, n - 1) for n in numbers]


def _encapsulated_frame(ds: Dataset, index: int) -> bytes:
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        return bytes(
            get_frame(ds.PixelData, index, extended_offsets=offsets, number_of_frames=frames)
        )
    except (ValueError, IndexError) as exc:
        raise NotAcceptable(f"the stored frame {index + 1} cannot be read ({exc})") from exc


def _decoded_frame(ds: Dataset, index: int) -> bytes:
    """Return one frame as Explicit VR Little Endian pixel data bytes (what decompress gives)."""
    try:
        pixels = pixel_array(ds, index=index)
    except Exception as exc:
        raise NotAcceptable(f"frame {index + 1} cannot be decoded ({type(exc).__name__})") from exc
    if int(ds.get("BitsAllocated", 8)) == 1:
        return bytes(pack_bits(pixels))
    little: np.ndarray = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    return little.tobytes()
