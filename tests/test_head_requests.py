"""HEAD is answered wherever GET is (HTTP requires it; load balancers' health checks use it):
the GET's status and headers, no body, the same access control and access log."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from service.auth.roles import Role
from service.orm import AccessLogEntry
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import make_cr, multipart_body, stow_headers, to_bytes
from tests.live_server import live_server


def log_rows(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(AccessLogEntry)) or 0


def test_head_answers_as_get_without_a_body(
    settings: Settings, runtime: Runtime, tokens: dict[Role, str], tmp_path: Path
) -> None:
    ds = make_cr(rows=64, columns=64)
    auth = {"Authorization": f"Bearer {tokens[Role.INTEGRATION]}"}
    instance = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    with (
        live_server(settings, tmp_path / "server.log") as server,
        httpx.Client(base_url=server.base_url, timeout=30) as client,
    ):
        stored = client.post(
            "/dicomweb/studies",
            content=multipart_body([to_bytes(ds)]),
            headers=stow_headers(tokens[Role.INTEGRATION]),
        )
        assert stored.status_code == 200, stored.text
        health = client.head("/healthz")
        assert health.status_code == 200 and health.content == b""
        assert client.head("/dicomweb/studies").status_code == 401  # still needs a token
        for path, accept in (
            ("/dicomweb/studies", "application/dicom+json"),
            (f"{instance}/rendered", "image/png"),
        ):
            got = client.get(path, headers=auth | {"Accept": accept})
            rows = log_rows(runtime)
            head = client.head(path, headers=auth | {"Accept": accept})
            assert head.status_code == 200, path
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]
            assert head.headers["content-length"] == str(len(got.content))
            assert log_rows(runtime) == rows + 1  # a read of patient data, logged
