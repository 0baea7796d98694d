"""A failure midway through storing leaves no half file and no orphan row."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import RootTransaction
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service import sqlite_compiled
from service.app import create_app
from service.db import session_scope
from service.dicom import store as store_module
from service.dicom.archive import Archive, ReceivedFile
from service.dicom.failure import FailureReason
from service.dicom.store import StoreStatus, store_received, store_received_together
from service.orm import AccessLogEntry
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import make_cr, to_bytes
from tests.test_stow import archive_files, failures, instance_count, stow


@pytest.mark.parametrize(
    ("step", "error"),
    [
        ("sync", OSError(5, "Input/output error")),  # flushing the received file
        ("place", OSError(28, "No space left on device")),  # filing it in its folder
    ],
)
def test_disk_failure_while_storing_leaves_nothing(
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    error: OSError,
) -> None:
    def failing(*_args: object) -> None:
        raise error

    monkeypatch.setattr(Archive, step, failing)
    response = stow(client, integration_token, [to_bytes(make_cr())])
    assert response.status_code == 409
    [(code, reason)] = failures(response.json())
    assert code == FailureReason.OUT_OF_RESOURCES
    assert "storage error" in reason
    assert "nothing was stored" in reason
    assert instance_count(runtime) == 0
    assert archive_files(runtime) == []
    assert list(runtime.archive.incoming.iterdir()) == []


@pytest.mark.parametrize("series", ["new", "known"])
def test_database_failure_at_commit_removes_the_placed_file(
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    series: str,
) -> None:
    """One instance is stored on SQLite's driver or on a PostgreSQL connection, several
    together in a session (see ``store._index_and_file``): the commit fails in any."""
    earlier = make_cr()
    if series == "known":
        assert stow(client, integration_token, [to_bytes(earlier)]).status_code == 200
    real_place, real_commit, real_run = Archive.place, Session.commit, sqlite_compiled._run
    placed: list[str] = []
    failed: list[bool] = []

    def place_and_remember(
        self: Archive, received: ReceivedFile, relative: str, folders: set[Path] | None = None
    ) -> Path:
        placed.append(relative)
        return real_place(self, received, relative, folders)

    def fails_after_place() -> bool:
        # Only the commit of the transaction that filed the instance fails.
        if placed and not failed:
            failed.append(True)
            return True
        return False

    def commit_failing_after_place(self: Session) -> None:
        if fails_after_place():
            raise OperationalError("COMMIT", {}, Exception("connection lost"))
        real_commit(self)

    def driver_commit_failing_after_place(connection: object, sql: str, error: type) -> None:
        if sql == "COMMIT" and fails_after_place():
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        real_run(connection, sql, error)

    def connection_commit_failing_after_place(self: RootTransaction) -> None:
        if fails_after_place():
            raise OperationalError("COMMIT", {}, Exception("connection lost"))
        real_root_commit(self)

    real_root_commit = RootTransaction.commit
    monkeypatch.setattr(Archive, "place", place_and_remember)
    monkeypatch.setattr(Session, "commit", commit_failing_after_place)
    monkeypatch.setattr(sqlite_compiled, "_run", driver_commit_failing_after_place)
    monkeypatch.setattr(RootTransaction, "commit", connection_commit_failing_after_place)
    instance = make_cr(study_uid=earlier.StudyInstanceUID, series_uid=earlier.SeriesInstanceUID)
    response = stow(client, integration_token, [to_bytes(instance)])
    monkeypatch.setattr(Session, "commit", real_commit)
    monkeypatch.setattr(sqlite_compiled, "_run", real_run)
    monkeypatch.setattr(RootTransaction, "commit", real_root_commit)
    assert placed, "the instance never reached the filing step"
    assert failed, "no commit failed"
    assert response.status_code == 409
    [(code, reason)] = failures(response.json())
    assert code == FailureReason.PROCESSING_FAILURE
    assert "database error" in reason
    expected = 1 if series == "known" else 0
    assert instance_count(runtime) == expected
    assert len(archive_files(runtime)) == expected
    assert list(runtime.archive.incoming.iterdir()) == []
    with runtime.session_factory() as session:
        actions = session.scalars(select(AccessLogEntry.action)).all()
    assert actions.count("dicom.store") == expected, "a log row claims a store that did not happen"
    # The transaction was rolled back, not left open: the next store goes through.
    again = make_cr(study_uid=earlier.StudyInstanceUID, series_uid=earlier.SeriesInstanceUID)
    assert stow(client, integration_token, [to_bytes(again)]).status_code == 200
    assert instance_count(runtime) == expected + 1


def test_failed_store_keeps_the_file_a_concurrent_store_of_the_instance_filed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's commit fails after A filed its copy; A's transaction (and its locks) end; B stores
    the same SOP Instance UID at the same path and commits; only then does A clean up. B's
    file must survive A's cleanup."""
    first = make_cr(PatientName="First^Try")
    second = make_cr(
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
        sop_uid=first.SOPInstanceUID,
        PatientName="Second^Try",
    )
    real_commit = Session.commit
    a_failed: list[bool] = []
    b_outcomes: list[StoreStatus] = []

    def commit_failing_once(self: Session) -> None:
        if not a_failed:
            a_failed.append(True)
            raise OperationalError("COMMIT", {}, Exception("connection lost"))
        real_commit(self)

    real_run = sqlite_compiled._run

    def driver_commit_failing_once(connection: Any, sql: str, error: type[Exception]) -> None:
        # On SQLite one instance is stored on the driver: its COMMIT fails there instead.
        if sql == "COMMIT" and not a_failed:
            a_failed.append(True)
            raise OperationalError("COMMIT", {}, Exception("connection lost"))
        real_run(connection, sql, error)

    @contextmanager
    def scope_letting_b_in_after_a_failed(factory: sessionmaker[Session]) -> Iterator[Session]:
        if a_failed and not b_outcomes:
            b_outcomes.append(StoreStatus.FAILED)  # B's own transactions pass straight through
            b_outcomes[0] = store_received(
                session_factory=runtime.session_factory,
                archive=runtime.archive,
                received=received_file(runtime, to_bytes(second)),
            ).status
        with session_scope(factory) as session:
            yield session

    real_root_commit = RootTransaction.commit

    def connection_commit_failing_once(self: RootTransaction) -> None:
        # On PostgreSQL one instance is stored on a connection: its commit fails there.
        if not a_failed:
            a_failed.append(True)
            raise OperationalError("COMMIT", {}, Exception("connection lost"))
        real_root_commit(self)

    monkeypatch.setattr(Session, "commit", commit_failing_once)
    monkeypatch.setattr(sqlite_compiled, "_run", driver_commit_failing_once)
    monkeypatch.setattr(RootTransaction, "commit", connection_commit_failing_once)
    monkeypatch.setattr(store_module, "session_scope", scope_letting_b_in_after_a_failed)
    a = store_received(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=received_file(runtime, to_bytes(first)),
    )
    assert a.status is StoreStatus.FAILED
    assert a.failure == FailureReason.PROCESSING_FAILURE
    assert b_outcomes == [StoreStatus.STORED], "B never ran between A's failure and cleanup"
    [stored] = archive_files(runtime)
    assert stored.read_bytes() == to_bytes(second)
    assert instance_count(runtime) == 1


def received_file(runtime: Runtime, data: bytes) -> ReceivedFile:
    writer = runtime.archive.writer(len(data) + 1)
    writer.write(data)
    return writer.finish()


def test_stored_together_means_all_or_none(runtime: Runtime) -> None:
    kept = make_cr(SOPInstanceUID="1.2.826.0.1.3680043.8.498.901")
    assert store_received(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=received_file(runtime, to_bytes(kept)),
    ).ok
    kept_bytes = archive_files(runtime)[0].read_bytes()
    new = make_cr(SOPInstanceUID="1.2.826.0.1.3680043.8.498.902")
    clash = make_cr(SOPInstanceUID=kept.SOPInstanceUID, PatientName="Other^Content")
    outcomes = store_received_together(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=[received_file(runtime, to_bytes(new)), received_file(runtime, to_bytes(clash))],
    )
    # The second one is refused (same UID, other content), so the first is not kept either.
    assert [o.status for o in outcomes] == [StoreStatus.FAILED, StoreStatus.FAILED]
    assert all("already stored with different content" in o.reason for o in outcomes)
    assert instance_count(runtime) == 1
    assert len(archive_files(runtime)) == 1
    assert archive_files(runtime)[0].read_bytes() == kept_bytes
    assert list(runtime.archive.incoming.iterdir()) == []

    outcomes = store_received_together(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=[received_file(runtime, to_bytes(new)), received_file(runtime, to_bytes(kept))],
    )
    assert [o.status for o in outcomes] == [StoreStatus.STORED, StoreStatus.ALREADY_STORED]
    assert instance_count(runtime) == 2


def test_start_up_sweeps_incoming_files_left_by_a_crash(settings: Settings) -> None:
    incoming = settings.archive_path / ".incoming"
    incoming.mkdir(parents=True)
    left_by_crash = incoming / "tmpcrash.part"
    being_written = incoming / "tmplive.part"
    left_by_crash.write_bytes(b"DICM half a file")
    being_written.write_bytes(b"DICM an upload in progress")
    two_hours_ago = time.time() - 7200
    os.utime(left_by_crash, (two_hours_ago, two_hours_ago))

    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200

    assert not left_by_crash.exists()
    assert being_written.read_bytes() == b"DICM an upload in progress"
