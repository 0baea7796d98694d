"""STOW-RS on SQLite: the event loop stores an instance itself where it need not wait and the
checks are quick; a worker thread takes over, with the same answer and nothing lost, where
they are not (another writer holds the turn, compressed or large instances, a resend whose
pixels must be compared). On PostgreSQL every store runs in a worker thread."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.concurrency import run_in_threadpool
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from starlette.requests import Request

from service.db import sqlite_driver_transaction
from service.dicom import archive as archive_module
from service.dicom import store, stow_endpoints
from service.dicom.multipart import MultipartRelatedReader
from service.dicom.stow_response import FAILURE_DETAIL
from service.middleware import requests_in_flight
from service.orm import AccessLogEntry, Instance
from service.request_urls import request_base_url
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import POSTGRES_URL, bearer
from tests.factories import (
    BOUNDARY,
    make_cr,
    multipart_body,
    rg1_files,
    stow_headers,
    to_bytes,
)

IN_THREAD = "store_rest_and_queue_analyses"
DICOM_ACCEPT = 'multipart/related; type="application/dicom"'


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No analyses on arrival, unless a test asks: they would add their own thread trips."""
    return settings.model_copy(update={"auto_analyse": False})


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions STOW-RS hands to a worker thread."""
    handed: list[str] = []

    async def recorded(function: Callable[..., Any], *args: Any) -> Any:
        if function.__name__ != "_feed":  # a large body is received in batches, stored or not
            handed.append(function.__name__)
        return await run_in_threadpool(function, *args)

    monkeypatch.setattr(stow_endpoints, "run_in_threadpool", recorded)
    return handed


def stow(client: TestClient, token: str, payloads: list[bytes]):
    return client.post(
        "/dicomweb/studies", content=multipart_body(payloads), headers=stow_headers(token)
    )


def count(runtime: Runtime, what: Any, *where: Any) -> int:
    with runtime.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(what).where(*where)) or 0)


def stores_logged(runtime: Runtime) -> int:
    return count(runtime, AccessLogEntry, AccessLogEntry.action == "dicom.store")


def incoming_files(settings: Settings) -> list[Path]:
    assert settings.archive_dir is not None
    return list((settings.archive_dir / ".incoming").iterdir())


def instance_url(payload: bytes) -> str:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(payload), stop_before_pixels=True)
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def test_a_store_on_sqlite_needs_no_worker_thread(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    settings: Settings,
) -> None:
    payload = to_bytes(make_cr())
    response = stow(client, integration_token, [payload])
    assert response.status_code == 200, response.text
    [stored] = response.json()["00081199"]["Value"]  # ReferencedSOPSequence
    assert stored["00081190"]["Value"][0].startswith("http://testserver/dicomweb/studies/")
    assert hops == ([IN_THREAD] if POSTGRES_URL else [])
    assert count(runtime, Instance) == 1
    assert stores_logged(runtime) == 1
    assert incoming_files(settings) == []
    got = client.get(
        instance_url(payload), headers=bearer(integration_token) | {"Accept": DICOM_ACCEPT}
    )
    assert got.status_code == 200
    assert payload in got.content


@pytest.mark.skipif(bool(POSTGRES_URL), reason="the write turn is SQLite's")
@pytest.mark.parametrize("writer", ["a thread of Vigil's", "a connection outside Vigil"])
def test_a_store_waits_in_a_thread_while_another_writer_holds_the_turn(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    settings: Settings,
    writer: str,
) -> None:
    holding, release = threading.Event(), threading.Event()

    def vigil_writer() -> None:
        with sqlite_driver_transaction(runtime.engine):
            holding.set()
            release.wait(10)

    def outside_writer() -> None:  # no turn taken: the loop's BEGIN IMMEDIATE finds it busy
        connection = sqlite3.connect(str(make_url(settings.database_url).database))
        connection.execute("BEGIN IMMEDIATE")
        holding.set()
        release.wait(10)
        connection.rollback()
        connection.close()

    thread = threading.Thread(
        target=vigil_writer if writer.startswith("a thread") else outside_writer
    )
    thread.start()
    assert holding.wait(10)
    timer = threading.Timer(0.3, release.set)  # the waiting thread stores once it is free
    timer.start()
    try:
        response = stow(client, integration_token, [to_bytes(make_cr())])
    finally:
        release.set()
        thread.join()
        timer.cancel()
    assert response.status_code == 200, response.text
    assert hops == [IN_THREAD]
    assert count(runtime, Instance) == 1
    assert stores_logged(runtime) == 1
    assert incoming_files(settings) == []


@pytest.mark.parametrize("kind", ["JPEG 2000 (decoded to be checked)", "over the loop's size"])
def test_compressed_and_large_instances_are_stored_in_a_thread(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    if kind.startswith("JPEG"):
        payload = rg1_files()["RG1_J2KR"].read_bytes()
    else:
        payload = to_bytes(make_cr())
        monkeypatch.setattr(store, "LOOP_MAX_STORE_BYTES", len(payload) - 1)
    response = stow(client, integration_token, [payload])
    assert response.status_code == 200, response.text
    assert hops == [IN_THREAD]
    assert count(runtime, Instance) == 1
    assert stores_logged(runtime) == 1


def test_a_resend_in_another_encoding_is_compared_in_a_thread(
    hops: list[str], client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    files = rg1_files()  # RG1_UNCI is RG1_J2KI's image, uncompressed: other bytes, same pixels
    first = stow(client, integration_token, [files["RG1_J2KI"].read_bytes()])
    assert first.status_code == 200, first.text
    hops.clear()
    again = stow(client, integration_token, [files["RG1_UNCI"].read_bytes()])
    assert again.status_code == 200, again.text
    assert hops == [IN_THREAD]  # the loop began, found other bytes, and handed it over
    assert count(runtime, Instance) == 1
    assert stores_logged(runtime) == 2  # stored, then already stored


def test_a_conflicting_resend_found_on_the_loop_keeps_the_stored_copy(
    hops: list[str], client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    ds = make_cr()
    original = to_bytes(ds)
    assert stow(client, integration_token, [original]).status_code == 200
    ds.PatientName = "Other^Name"
    response = stow(client, integration_token, [to_bytes(ds)])
    assert response.status_code == 409, response.text
    [failed] = response.json()["00081198"]["Value"]  # FailedSOPSequence
    assert failed["00081197"]["Value"] == [0x0111]  # duplicate SOP instance
    got = client.get(
        instance_url(original), headers=bearer(integration_token) | {"Accept": DICOM_ACCEPT}
    )
    assert original in got.content
    assert count(runtime, Instance) == 1


def test_a_multi_instance_request_hands_what_is_left_to_one_thread(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stow_endpoints, "LOOP_BUDGET_S", -1.0)  # spent after the first store
    study = make_cr().StudyInstanceUID
    payloads = [to_bytes(make_cr(study_uid=study, seed=n)) for n in range(3)]
    response = stow(client, integration_token, payloads)
    assert response.status_code == 200, response.text
    assert len(response.json()["00081199"]["Value"]) == 3
    assert hops == [IN_THREAD]
    assert count(runtime, Instance) == 3
    assert stores_logged(runtime) == 3
    assert incoming_files(settings) == []


def test_a_part_that_is_not_dicom_is_refused_on_the_loop_leaving_nothing(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    settings: Settings,
) -> None:
    good = to_bytes(make_cr())
    response = stow(client, integration_token, [b"not a DICOM file at all" * 20, good])
    assert response.status_code == 202, response.text
    [failed] = response.json()["00081198"]["Value"]
    assert "not a DICOM Part 10 file" in failed[FAILURE_DETAIL]["Value"][0]
    assert count(runtime, Instance) == 1
    assert incoming_files(settings) == []
    assert hops == ([IN_THREAD] if POSTGRES_URL else [])  # no SOP instance named: no refusal log


@pytest.mark.parametrize("others", [0, 1])
def test_with_other_requests_in_flight_a_worker_thread_finishes_the_body(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    others: int,
) -> None:
    seen: list[int] = []

    def in_flight() -> int:
        seen.append(requests_in_flight())  # this request, counted by the middleware
        return seen[-1] + others

    monkeypatch.setattr(stow_endpoints, "requests_in_flight", in_flight)
    synced: list[Path] = []
    real_fsync = archive_module.fsync_path

    def fsync(path: Path, *, release_pages: bool = False) -> None:
        synced.append(path)
        real_fsync(path, release_pages=release_pages)

    monkeypatch.setattr(archive_module, "fsync_path", fsync)
    payload = to_bytes(make_cr(rows=256, columns=256))  # over the size a thread finishes
    assert len(payload) >= stow_endpoints._THREAD_FINISH_BYTES
    response = stow(client, integration_token, [payload])
    assert response.status_code == 200, response.text
    assert seen == ([] if POSTGRES_URL else [1])  # asked only where the loop stores
    # On PostgreSQL a worker thread stores every instance: it finishes the body too.
    assert hops == ([IN_THREAD] if POSTGRES_URL else ["_finish"] if others else [])
    assert [p.suffix for p in synced].count(".part") == 1  # the file's fsync, once
    assert count(runtime, Instance) == 1
    assert incoming_files(settings) == []
    got = client.get(
        instance_url(payload), headers=bearer(integration_token) | {"Accept": DICOM_ACCEPT}
    )
    assert payload in got.content


def test_a_body_too_large_for_the_loop_goes_to_one_worker_thread_with_others_in_flight(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stow_endpoints, "requests_in_flight", lambda: 3)
    payload = to_bytes(make_cr(rows=256, columns=256))
    monkeypatch.setattr(stow_endpoints, "LOOP_MAX_STORE_BYTES", len(payload) // 2)
    monkeypatch.setattr(store, "LOOP_MAX_STORE_BYTES", len(payload) // 2)
    response = stow(client, integration_token, [payload])
    assert response.status_code == 200, response.text
    assert hops == [IN_THREAD]  # finished, synced and stored in the one trip
    assert count(runtime, Instance) == 1
    assert stores_logged(runtime) == 1


def test_stored_instances_that_match_the_arrival_rules_are_queued_from_a_thread(
    client: TestClient, integration_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    analysis = client.app.state.analysis  # type: ignore[attr-defined]
    if analysis is None:
        pytest.skip("no analysis services in this app")
    monkeypatch.setattr(analysis.runtime.settings, "auto_analyse", True)
    seen: list[int] = []
    monkeypatch.setattr(
        analysis, "on_instances_stored", lambda outcomes: seen.append(len(outcomes))
    )
    handed: list[str] = []

    async def recorded(function: Callable[..., Any], *args: Any) -> Any:
        handed.append(function.__name__)
        return await run_in_threadpool(function, *args)

    monkeypatch.setattr(stow_endpoints, "run_in_threadpool", recorded)
    assert stow(client, integration_token, [to_bytes(make_cr())]).status_code == 200
    assert handed == [IN_THREAD]
    assert seen == [1]


@pytest.mark.parametrize(
    "headers, server, root_path",
    [
        ([(b"host", b"pacs.example.org:8042")], ("10.0.0.1", 8000), ""),
        ([(b"host", b"pacs.example.org")], ("10.0.0.1", 8000), "/vigil"),
        ([], ("10.0.0.1", 80), ""),
        ([], ("10.0.0.1", 8000), "/vigil/"),
        ([(b"host", b"bad host:xyz")], ("::1", 8000), ""),
    ],
)
def test_the_base_url_is_starlettes(
    settings: Settings,
    headers: list[tuple[bytes, bytes]],
    server: tuple[str, int],
    root_path: str,
) -> None:
    scope = {
        "type": "http",
        "scheme": "http",
        "server": server,
        "path": "/dicomweb/studies",
        "root_path": root_path,
        "query_string": b"limit=1",
        "headers": headers,
    }
    request = Request(scope)
    assert request_base_url(request, settings) == str(request.base_url).rstrip("/")
    configured = settings.model_copy(update={"base_url": "https://vigil.example.org"})
    assert request_base_url(request, configured) == "https://vigil.example.org"


@pytest.mark.parametrize("in_thread", [True, False])
def test_a_worker_thread_parses_the_last_chunks_as_one_buffer(
    runtime: Runtime, in_thread: bool
) -> None:
    payload = to_bytes(make_cr(rows=64, columns=64))
    body = multipart_body([payload])
    cuts = [0, 7, 500, len(body) // 2, len(body) - 3, len(body)]  # boundaries cut apart too
    chunks = [body[a:b] for a, b in itertools.pairwise(cuts)]
    reader = MultipartRelatedReader(
        boundary=BOUNDARY, archive=runtime.archive, max_part_bytes=1 << 30, max_parts=10
    )
    fed: list[int] = []
    real_feed = reader.feed

    def feed(chunk: bytes) -> None:
        fed.append(len(chunk))
        real_feed(chunk)

    reader.feed = feed  # type: ignore[method-assign]
    [part] = stow_endpoints._finish(reader, chunks, runtime.archive, sync=in_thread)

    # In a worker thread each chunk's parse, hash and write would wait to take the GIL back.
    assert fed == ([len(body)] if in_thread else [len(c) for c in chunks])
    assert part.file is not None and part.file.synced is in_thread
    assert part.file.path.read_bytes() == payload
    part.file.path.unlink()
