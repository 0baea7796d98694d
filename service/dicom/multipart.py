"""multipart/related bodies (PS3.18 8.6): read them part by part to disk, and write them.

Reading never holds a whole part in memory: each part streams into an incoming file.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.dicom.archive import Archive, IncomingWriter, ReceivedFile
from service.errors import BadRequest, PayloadTooLarge, VigilError


def parse_content_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Return the media type (lower case) and its parameters (names lower case)."""
    media, params = parse_options_header(header or "")
    return (
        media.decode("latin-1").strip().lower(),
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()},
    )


@dataclass
class ReceivedPart:
    """One part of a body: stored to an incoming file, or refused with a reason."""

    content_type: str
    file: ReceivedFile | None = None
    error: VigilError | None = None


@dataclass
class _Current:
    headers: dict[str, str] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    writer: IncomingWriter | None = None


class MultipartRelatedReader:
    """Feed a multipart/related body chunk by chunk; each part lands in the archive's inbox."""

    def __init__(
        self, *, boundary: str, archive: Archive, max_part_bytes: int, max_parts: int
    ) -> None:
        if not boundary or len(boundary) > 70:
            raise BadRequest("multipart/related needs a boundary parameter of 1 to 70 characters")
        self._archive = archive
        self._max_part_bytes = max_part_bytes
        self._max_parts = max_parts
        self.parts: list[ReceivedPart] = []
        self._current = _Current()
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            self.discard()
            raise BadRequest(f"malformed multipart/related body: {exc}") from exc

    def finish(self) -> list[ReceivedPart]:
        """Return the parts; raise BadRequest if the body stopped before its closing boundary."""
        self._parser.finalize()
        if not self._ended:
            self.discard()
            raise BadRequest(
                "the multipart/related body ended before its closing boundary (truncated upload?)"
            )
        return self.parts

    def discard(self) -> None:
        """Remove every incoming file this reader made."""
        if self._current.writer is not None:
            self._current.writer.abort()
        for part in self.parts:
            if part.file is not None:
                part.file.path.unlink(missing_ok=True)

    def _part_begin(self) -> None:
        if len(self.parts) >= self._max_parts:
            self.discard()
            raise PayloadTooLarge(
                f"more than {self._max_parts} instances in one request; send them in batches"
            )
        self._current = _Current()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._current.header_field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._current.header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._current.header_field.decode("latin-1").strip().lower()
        self._current.headers[name] = self._current.header_value.decode("latin-1").strip()
        self._current.header_field.clear()
        self._current.header_value.clear()

    def _headers_finished(self) -> None:
        self._current.writer = self._archive.writer(self._max_part_bytes)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current.writer is not None:
            self._current.writer.write(memoryview(data)[start:end])  # a view: no copy

    def _part_end(self) -> None:
        content_type, _ = parse_content_type(self._current.headers.get("content-type"))
        part = ReceivedPart(content_type=content_type or "application/dicom")
        writer = self._current.writer
        self._current.writer = None
        if writer is None:
            part.error = BadRequest("part has no headers")
        else:
            try:
                part.file = writer.finish()
            except PayloadTooLarge as exc:
                part.error = exc
        self.parts.append(part)

    def _end(self) -> None:
        self._ended = True


def new_boundary() -> str:
    return "vigil-" + secrets.token_hex(16)


def iter_multipart_files(
    files: list[tuple[Path, str]], boundary: str, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """Yield a multipart/related body from (path, content type) pairs, reading each in chunks."""
    for path, content_type in files:
        yield (
            f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {path.stat().st_size}\r\n\r\n"
        ).encode("latin-1")
        with path.open("rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")


def iter_multipart_bytes(parts: list[tuple[bytes, str]], boundary: str) -> Iterator[bytes]:
    """Yield a multipart/related body from in-memory (payload, content type) pairs."""
    for payload, content_type in parts:
        yield (
            f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1")
        yield payload
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")
