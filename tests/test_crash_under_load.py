"""What Vigil answered 200 for survives the server being killed (SIGKILL, no shutdown) while
clients are storing: every such instance comes back byte for byte, the index and the files
agree, and a restarted server stores again."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

from service.auth.roles import Role
from service.dicom.archive_check import check_archive
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import make_cr, multipart_body, stow_headers, to_bytes
from tests.live_server import live_server

CLIENTS = 4
DICOM_PARTS = 'multipart/related; type="application/dicom"'
NO_ANALYSES = {"VIGIL_AUTO_ANALYSE": "false"}  # the archive alone; analyses have their tests


def test_instances_answered_200_survive_a_kill_during_a_load(
    settings: Settings, runtime: Runtime, tokens: dict[Role, str], tmp_path: Path
) -> None:
    token = tokens[Role.INTEGRATION]
    acknowledged: dict[str, tuple[str, bytes]] = {}  # SOP Instance UID -> (its URL, bytes)
    lock, stop = threading.Lock(), threading.Event()

    def client(number: int, base_url: str) -> None:
        seed = number * 100_000
        with httpx.Client(base_url=base_url, timeout=30) as http:
            while not stop.is_set():
                seed += 1
                ds = make_cr(seed=seed, rows=128, columns=128)
                data = to_bytes(ds)
                try:
                    answer = http.post(
                        "/dicomweb/studies", content=multipart_body([data]),
                        headers=stow_headers(token),
                    )  # fmt: skip
                except httpx.TransportError:
                    return  # the server is gone
                if answer.status_code == 200:
                    url = (
                        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                        f"/instances/{ds.SOPInstanceUID}"
                    )
                    with lock:
                        acknowledged[ds.SOPInstanceUID] = (url, data)

    with live_server(settings, tmp_path / "first.log", NO_ANALYSES) as server:
        threads = [
            threading.Thread(target=client, args=(n, server.base_url)) for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)  # mid-load: requests in flight are cut off
        stop.set()
        for thread in threads:
            thread.join()
    assert len(acknowledged) >= 60
    with (
        live_server(settings, tmp_path / "second.log", NO_ANALYSES) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        auth = {"Authorization": f"Bearer {token}", "Accept": DICOM_PARTS}
        for url, data in acknowledged.values():
            back = http.get(url, headers=auth)
            assert back.status_code == 200, url
            assert data in back.content, url  # the bytes sent, within the multipart part
        again = http.post(
            "/dicomweb/studies", content=multipart_body([to_bytes(make_cr(seed=7))]),
            headers=stow_headers(token),
        )  # fmt: skip
        assert again.status_code == 200
    report = check_archive(runtime.session_factory, runtime.archive, verify=True)
    assert report.missing == [] and report.changed == []
    assert len(report.strays) <= CLIENTS  # a file renamed in before the commit the kill cut off
