"""A 500 MB STOW-RS request is streamed to disk: the server never holds it in memory."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset

from service.auth.roles import Role
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import BOUNDARY, make_cr, stow_headers
from tests.live_server import current_rss_bytes, live_server, peak_rss_bytes

ROWS, COLUMNS = 15259, 16384  # 16-bit: 500,006,912 bytes of pixel data
CHUNK = b"\x07\x01" * (1 << 19)  # 1 MiB of pixels


def header_without_pixels() -> tuple[Dataset, bytes]:
    ds = make_cr(rows=1, columns=1)
    del ds.PixelData
    ds.Rows, ds.Columns = ROWS, COLUMNS
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return ds, buffer.getvalue()


def big_instance_body() -> tuple[Dataset, int, Iterator[bytes], hashlib._Hash]:
    ds, header = header_without_pixels()
    pixel_bytes = ROWS * COLUMNS * 2
    # Pixel Data (7FE0,0010), OW, explicit VR little endian, defined length.
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        digest.update(header + element)
        yield header + element
        left = pixel_bytes
        while left:
            chunk = CHUNK[: min(len(CHUNK), left)]
            digest.update(chunk)
            yield chunk
            left -= len(chunk)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    return ds, pixel_bytes, body(), digest


@pytest.mark.slow
def test_500_mb_instance_streams_without_500_mb_of_memory(
    settings: Settings, runtime: Runtime, tokens: dict[Role, str], tmp_path: Path
) -> None:
    ds, pixel_bytes, body, digest = big_instance_body()
    assert pixel_bytes > 500_000_000
    with live_server(settings, tmp_path / "server.log") as server:
        baseline = current_rss_bytes(server.pid)
        response = httpx.post(
            f"{server.base_url}/dicomweb/studies",
            content=body,
            headers=stow_headers(tokens[Role.INTEGRATION]),
            timeout=300,
        )
        peak = peak_rss_bytes(server.pid)
    assert response.status_code == 200, response.text
    growth = peak - baseline
    assert growth < 100 * 1024 * 1024, f"server memory grew by {growth / 2**20:.0f} MiB"
    [stored] = list(runtime.archive.root.rglob(f"{ds.SOPInstanceUID}.dcm"))
    assert stored.stat().st_size > 500_000_000
    sha = hashlib.sha256()
    with stored.open("rb") as f:
        while chunk := f.read(1 << 22):
            sha.update(chunk)
    assert sha.hexdigest() == digest.hexdigest()
