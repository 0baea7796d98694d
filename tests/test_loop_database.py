"""The event loop's own SQLite work: reads within a budget, commits only when they need not wait,
and the worker-thread path taking over (same answers, same access-log rows) when they would."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest
from fastapi.concurrency import run_in_threadpool
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from service import loop_database as loop_module
from service.app import create_app
from service.auth import access_log
from service.auth.access_log import _INSERT
from service.db import sqlite_driver_transaction
from service.dicom import qido_endpoints, retrieve, wado_endpoints
from service.loop_database import LoopDatabase, LoopTooLong, open_loop_database
from service.orm import AccessLogEntry
from service.orm.base import utcnow
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import POSTGRES_URL, bearer
from tests.factories import make_cr, multipart_body, stow_headers, to_bytes

sqlite_only = pytest.mark.skipif(bool(POSTGRES_URL), reason="the loop's own work is SQLite's")
DICOM_ACCEPT = 'multipart/related; type="application/dicom"'
# A statement that runs long: SQLite counts to a hundred million.
SLOW = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
SLOW += "SELECT count(*) FROM n"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No analyses on arrival: their writes would take the write turn at random moments."""
    return settings.model_copy(update={"auto_analyse": False})


def log_row() -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "at": utcnow(),
        "user_pk": None,
        "token_pk": None,
        "username": "loop-test",
        "role": "integration",
        "action": "dicom.search",
        "study_instance_uid": None,
        "series_instance_uid": None,
        "sop_instance_uid": None,
        "result_count": 0,
        "status_code": 200,
        "client_addr": "127.0.0.1",
        "request_id": "loop-test",
    }


def logged(runtime: Runtime, action: str | None = None) -> int:
    query = select(func.count()).select_from(AccessLogEntry)
    if action is not None:
        query = query.where(AccessLogEntry.action == action)
    with runtime.session_factory() as session:
        return int(session.scalar(query) or 0)


def test_on_a_database_server_there_is_no_loop_connection() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert open_loop_database(url, durable_read_log=False) is None


@sqlite_only
def test_the_loop_connection_never_waits_and_never_checkpoints(loop_db: LoopDatabase) -> None:
    with loop_db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 0
        assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL


@sqlite_only
def test_a_commit_is_made_at_once_when_the_write_turn_is_free(
    loop_db: LoopDatabase, runtime: Runtime
) -> None:
    assert loop_db.try_commit(_INSERT, log_row())
    assert logged(runtime) == 1


@sqlite_only
def test_no_commit_while_another_thread_of_vigil_writes(
    loop_db: LoopDatabase, runtime: Runtime
) -> None:
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with sqlite_driver_transaction(runtime.engine):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        assert not loop_db.try_commit(_INSERT, log_row())
    finally:
        release.set()
        thread.join()
    assert logged(runtime) == 0
    assert loop_db.try_commit(_INSERT, log_row())  # the turn is free again
    assert logged(runtime) == 1


@sqlite_only
def test_no_commit_while_a_writer_outside_vigil_holds_the_database(
    loop_db: LoopDatabase, runtime: Runtime, settings: Settings
) -> None:
    outsider = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    outsider.isolation_level = None
    outsider.execute("BEGIN IMMEDIATE")
    try:
        assert not loop_db.try_commit(_INSERT, log_row())
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()
    assert logged(runtime) == 0


@sqlite_only
def test_with_a_durable_read_log_the_loop_only_reads(settings: Settings) -> None:
    database = open_loop_database(settings.database_url, durable_read_log=True)
    assert database is not None
    try:
        assert not database.try_commit(_INSERT, log_row())
    finally:
        database.close()


@sqlite_only
def test_a_read_past_the_budget_is_interrupted_and_the_next_one_is_not(
    loop_db: LoopDatabase,
) -> None:
    with (
        pytest.raises(LoopTooLong),
        loop_db.bounded(0.01),
        loop_db.engine.connect() as connection,
    ):
        connection.execute(text(SLOW)).scalar()
    with loop_db.bounded(), loop_db.engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    # Outside ``bounded`` nothing is interrupted.
    with loop_db.engine.connect() as connection:
        assert connection.execute(text(SLOW.replace("100000000", "300000"))).scalar() == 300000


@sqlite_only
def test_the_loop_asks_for_a_checkpoint_every_so_many_commits(
    loop_db: LoopDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "CHECKPOINT_EVERY", 3)
    done: list[bool] = []
    real = loop_db._checkpoint_now

    def counted() -> None:
        real()
        done.append(True)

    monkeypatch.setattr(loop_db, "_checkpoint_now", counted)
    for expected in ([True], [True, True]):
        for _ in range(3):
            assert loop_db.try_commit(_INSERT, log_row())
        assert loop_db._checkpoint is not None
        loop_db._checkpoint.result(timeout=10)
        assert done == expected
    assert loop_db.try_commit(_INSERT, log_row())
    loop_db._checkpointer.shutdown(wait=True)
    assert done == [True, True]


# --- the endpoints: the worker thread takes over where the loop would wait --------------------


@pytest.fixture
def stored(client: TestClient, integration_token: str) -> tuple[bytes, str]:
    """One stored CR instance: its bytes and its WADO-RS URL."""
    ds = make_cr()
    payload = to_bytes(ds)
    response = client.post(
        "/dicomweb/studies",
        content=multipart_body([payload]),
        headers=stow_headers(integration_token),
    )
    assert response.status_code == 200, response.text
    url = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    return payload, url


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions the read endpoints hand to a worker thread."""
    handed: list[str] = []

    async def recorded(function: Callable[..., Any], *args: Any) -> Any:
        handed.append(function.__name__)
        return await run_in_threadpool(function, *args)

    for module in (wado_endpoints, qido_endpoints, access_log):
        monkeypatch.setattr(module, "run_in_threadpool", recorded)
    return handed


def only_part(response) -> bytes:
    assert response.status_code == 200, response.text
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"').encode()
    head, _, rest = response.content.partition(b"\r\n\r\n")
    assert head.startswith(b"--" + boundary)
    payload, _, tail = rest.rpartition(b"\r\n--" + boundary + b"--\r\n")
    assert tail == b""
    return bytes(payload)


@pytest.mark.parametrize("page_cache", ["read on the loop", "not cached: read in a thread"])
def test_a_retrieve_answers_the_same_bytes_either_way(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    stored: tuple[bytes, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    page_cache: str,
) -> None:
    payload, url = stored
    cached = not page_cache.startswith("not cached")
    headers = bearer(integration_token) | {"Accept": DICOM_ACCEPT}
    if cached:
        # A stored file leaves the page cache once on disk (``writeback``): the first
        # retrieve reads it back in a worker thread, and so caches it for the next.
        assert only_part(client.get(url, headers=headers)) == payload
        hops.clear()
    else:
        monkeypatch.setattr(retrieve, "_read_cached", lambda _path, _into: False)
    response = client.get(url, headers=headers)
    assert only_part(response) == payload
    assert logged(runtime, "dicom.retrieve") == (2 if cached else 1)
    if POSTGRES_URL:
        assert hops == ["_instances_in_thread"]
    else:
        assert hops == ([] if cached else ["_instances_response"])


def test_reads_answer_from_a_worker_thread_while_another_writer_holds_the_turn(
    client: TestClient, integration_token: str, stored: tuple[bytes, str], runtime: Runtime
) -> None:
    payload, url = stored
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with nullcontext() if POSTGRES_URL else sqlite_driver_transaction(runtime.engine):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    timer = threading.Timer(0.3, release.set)  # the waiting thread commits once it is free
    timer.start()
    try:
        response = client.get(url, headers=bearer(integration_token) | {"Accept": DICOM_ACCEPT})
        search = client.get("/dicomweb/studies", headers=bearer(integration_token))
    finally:
        release.set()
        thread.join()
        timer.cancel()
    assert only_part(response) == payload
    assert search.status_code == 200 and len(search.json()) == 1
    assert logged(runtime, "dicom.retrieve") == 1
    assert logged(runtime, "dicom.search") == 1


def test_a_search_past_the_loop_budget_runs_again_in_a_thread(
    request: pytest.FixtureRequest,
    client: TestClient,
    integration_token: str,
    stored: tuple[bytes, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = client.get("/dicomweb/studies", headers=bearer(integration_token)).json()
    monkeypatch.setattr(loop_module, "LOOP_BUDGET_S", -1.0)  # every loop read runs out
    monkeypatch.setattr(loop_module, "_PROGRESS_STEPS", 1)  # and is told so at its first step
    interrupted: list[bool] = []
    real_bounded = LoopDatabase.bounded

    def spied(self: LoopDatabase, budget_s: float | None = None) -> Iterator[None]:
        try:
            with real_bounded(self, budget_s):
                yield
        except LoopTooLong:
            interrupted.append(True)
            raise

    monkeypatch.setattr(LoopDatabase, "bounded", contextmanager(spied))
    handed: list[str] = request.getfixturevalue("hops")
    response = client.get("/dicomweb/studies", headers=bearer(integration_token))
    assert response.status_code == 200
    assert response.json() == expected
    assert handed == ["_search_in_thread"]
    assert logged(runtime, "dicom.search") == 2
    assert interrupted == ([] if POSTGRES_URL else [True])


def test_a_large_search_page_is_built_in_a_thread(
    hops: list[str],
    client: TestClient,
    integration_token: str,
    stored: tuple[bytes, str],
    runtime: Runtime,
) -> None:
    limit = qido_endpoints.LOOP_MAX_RESULTS
    for asked in (limit, limit + 1):
        response = client.get(f"/dicomweb/studies?limit={asked}", headers=bearer(integration_token))
        assert response.status_code == 200 and len(response.json()) == 1
    assert hops == (["_search_in_thread"] * 2 if POSTGRES_URL else ["_search_in_thread"])
    assert logged(runtime, "dicom.search") == 2


@pytest.mark.parametrize("where", ["on the loop", "over the loop's count: in a thread"])
def test_metadata_answers_the_same_either_way(
    request: pytest.FixtureRequest,
    client: TestClient,
    integration_token: str,
    stored: tuple[bytes, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    _payload, url = stored
    expected = client.get(url + "/metadata", headers=bearer(integration_token)).json()
    over = where.startswith("over")
    if over:
        monkeypatch.setattr(wado_endpoints, "LOOP_MAX_METADATA", 0)
    handed: list[str] = request.getfixturevalue("hops")  # after the first, unrecorded, GET
    response = client.get(url + "/metadata", headers=bearer(integration_token))
    assert response.status_code == 200
    assert response.json() == expected
    if POSTGRES_URL:
        assert handed == ["_metadata_in_thread"]
    else:
        assert handed == (["_metadata_response"] if over else [])
    [attributes] = expected
    assert attributes["00080018"]["Value"] == [url.rsplit("/", 1)[1]]  # SOP Instance UID
    assert logged(runtime, "dicom.retrieve.metadata") == 2


@sqlite_only
def test_the_app_shares_its_loop_connection_with_token_lookups(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        app_state = client.app.state  # type: ignore[attr-defined]
        assert app_state.loop_database is not None
        query = app_state.token_lookup._local_query
        assert query._engine is app_state.loop_database.engine
