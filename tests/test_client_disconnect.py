"""A client that leaves mid-request (an upload cancelled, a network dropped) is no error of
ours: logged as what it is, without a traceback, and nothing it sent is stored."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from service.auth.roles import Role
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import BOUNDARY, make_cr, to_bytes
from tests.live_server import live_server
from tests.test_stow import instance_count


def send_and_leave(base_url: str, head: str, body: bytes, cut: int) -> None:
    """Send a request's head and the first `cut` bytes of its body, then close."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        length = f"Content-Length: {len(body)}\r\n\r\n"
        connection.sendall((head + length).encode() + body[:cut])
        time.sleep(0.3)


def test_a_client_that_leaves_mid_upload_is_logged_as_such_and_nothing_is_stored(
    settings: Settings, runtime: Runtime, tokens: dict[Role, str], tmp_path: Path
) -> None:
    part = to_bytes(make_cr(rows=512, columns=512))
    opening = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    body = opening + part + b"\r\n" + opening + part + f"\r\n--{BOUNDARY}--\r\n".encode()
    stow = (
        "POST /dicomweb/studies HTTP/1.1\r\nHost: vigil\r\n"
        f"Authorization: Bearer {tokens[Role.INTEGRATION]}\r\n"
        f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}\r\n'
    )
    login = (
        "POST /review/login HTTP/1.1\r\nHost: vigil\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
    )
    log_path = tmp_path / "server.log"
    with live_server(settings, log_path) as server:
        # Inside the first instance, after it, and short of the closing boundary only.
        for cut in (1000, len(opening) + len(part) + 200, len(body) - 10):
            send_and_leave(server.base_url, stow, body, cut)
        send_and_leave(server.base_url, login, b"username=a&password=" + b"b" * 5000, 30)
        deadline = time.monotonic() + 10
        while list(runtime.archive.incoming.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    errors = [entry for entry in entries if entry.get("level") == "error"]
    assert errors == [], errors
    left = [entry for entry in entries if entry["event"] == "request.client_disconnected"]
    assert len(left) == 3  # the stores; FastAPI answers a form it could not read with 400
    statuses = [
        e["status"] for e in entries if e["event"] == "request.completed" and e["method"] == "POST"
    ]
    assert sorted(statuses) == [400, 499, 499, 499]
    assert instance_count(runtime) == 0
    assert list(runtime.archive.incoming.iterdir()) == []
