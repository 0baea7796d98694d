"""Reading multipart/related bodies however the network cuts them into chunks: each part
lands on disk byte for byte, even where a chunk ends inside a boundary or a payload holds
something that looks like the start of one."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from service.dicom.archive import Archive
from service.dicom.multipart import MultipartRelatedReader, iter_multipart_bytes

BOUNDARY = "vigil-test-boundary"
DELIMITER = b"\r\n--" + BOUNDARY.encode()
# Pieces a payload is built from: plain bytes, and near-misses of the delimiter.
PIECES = st.sampled_from(
    [b"\r\n", b"\r\n--", b"\r\n--vigil-test", b"--" + BOUNDARY.encode(), b"\r", b"-", b"DICM"]
)
PAYLOAD = (
    st.lists(st.one_of(st.binary(min_size=1, max_size=300), PIECES), max_size=12)
    .map(b"".join)
    .filter(lambda payload: not _holds_the_delimiter(payload))
)


def _holds_the_delimiter(payload: bytes) -> bool:
    """Whether a payload would end its part early: no sender may put the delimiter inside a
    part (RFC 2046 5.1.1), including just after the CRLF that ends the part's headers."""
    return (b"\r\n" + payload + DELIMITER).find(DELIMITER) != len(payload) + 2


def read_in_chunks(body: bytes, sizes: list[int], archive: Archive) -> list[bytes]:
    reader = MultipartRelatedReader(
        boundary=BOUNDARY, archive=archive, max_part_bytes=1 << 20, max_parts=10
    )
    at, turn = 0, 0
    while at < len(body):
        size = sizes[turn % len(sizes)]
        reader.feed(body[at : at + size])
        at, turn = at + size, turn + 1
    out: list[bytes] = []
    for part in reader.finish():
        assert part.file is not None, part.error
        data = part.file.path.read_bytes()
        assert (part.file.size, part.file.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        out.append(data)
        part.file.path.unlink()
    return out


@settings(max_examples=150, deadline=None, derandomize=True)  # the same examples every run
@given(
    payloads=st.lists(PAYLOAD, min_size=1, max_size=3),
    sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=5),
)
def test_every_part_arrives_whole_however_the_body_is_chunked(
    payloads: list[bytes], sizes: list[int]
) -> None:
    body = b"".join(iter_multipart_bytes([(p, "application/dicom") for p in payloads], BOUNDARY))
    with tempfile.TemporaryDirectory() as root:
        archive = Archive(Path(root), fsync=False)
        assert read_in_chunks(body, sizes, archive) == payloads
        assert list(archive.incoming.iterdir()) == []
