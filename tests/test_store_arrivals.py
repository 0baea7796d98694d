"""Instances that arrive together under load are stored together on the event loop: one commit
and one fsync per folder for them all, each still checked, logged and refused on its own, and
handed back with its file whenever the loop should not store it (SQLite only)."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from service.db import Executes, sqlite_driver_transaction
from service.dicom import archive as archive_module
from service.dicom import stow_endpoints
from service.dicom.archive import Archive
from service.dicom.failure import FailureReason, InstanceRejected
from service.dicom.store import Arrival, StoreOutcome, StoreStatus, store_arrivals
from service.loop_database import LoopDatabase
from service.orm import Instance
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import POSTGRES_URL
from tests.factories import make_cr, multipart_body, rg1_files, stow_headers, to_bytes

pytestmark = pytest.mark.skipif(bool(POSTGRES_URL), reason="the loop stores on SQLite only")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"auto_analyse": False})


@pytest.fixture
def commits(loop_db: LoopDatabase, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The loop's commits, by weight."""
    seen: list[int] = []
    real = loop_db._committed

    def counted(weight: int = 1) -> None:
        seen.append(weight)
        real(weight)

    monkeypatch.setattr(loop_db, "_committed", counted)
    return seen


@pytest.fixture
def synced_folders(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every folder fsynced by the archive, in order (files' fsyncs release their pages)."""
    seen: list[Path] = []
    real = archive_module.fsync_path

    def recorded(path: Path, *, release_pages: bool = False) -> None:
        if not release_pages:
            seen.append(path)
        real(path, release_pages=release_pages)

    monkeypatch.setattr(archive_module, "fsync_path", recorded)
    return seen


class Audit:
    """The access-log hook: records what it was called for; can refuse one instance."""

    def __init__(self, refuse: str = "") -> None:
        self.seen: list[str] = []
        self.refuse = refuse

    def __call__(self, _rows: Executes, outcome: StoreOutcome) -> None:
        if outcome.sop_instance_uid == self.refuse:
            raise InstanceRejected("refused by the test", FailureReason.PROCESSING_FAILURE)
        self.seen.append(outcome.sop_instance_uid)


def arrival(archive: Archive, payload: bytes, audit: Audit, study: str | None = None) -> Arrival:
    writer = archive.writer(1 << 30)
    writer.write(payload)
    return Arrival(
        received=archive.synced(writer.finish()),
        require_image=True,
        expected_study_uid=study,
        audit=audit,
    )


def stored_uids(runtime: Runtime) -> set[str]:
    with runtime.session_factory() as session:
        return set(session.scalars(select(Instance.sop_instance_uid)))


def filed(runtime: Runtime, ds: Dataset) -> Path:
    relative = Archive.relative_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    return runtime.archive.path(relative)


def store_all(runtime: Runtime, loop_db: LoopDatabase, arrivals: list[Arrival]) -> None:
    store_arrivals(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        arrivals=arrivals,
        loop_database=loop_db,
    )


def test_arrivals_of_several_requests_share_one_commit_and_one_fsync_per_folder(
    runtime: Runtime, loop_db: LoopDatabase, commits: list[int], synced_folders: list[Path]
) -> None:
    same_series = make_cr()
    datasets = [
        same_series,
        make_cr(study_uid=same_series.StudyInstanceUID, series_uid=same_series.SeriesInstanceUID),
        make_cr(patient_id="PID-2"),
    ]
    audits = [Audit() for _ in datasets]
    arrivals = [
        arrival(runtime.archive, to_bytes(ds), a) for ds, a in zip(datasets, audits, strict=True)
    ]
    synced_folders.clear()  # the incoming files' own fsyncs

    store_all(runtime, loop_db, arrivals)

    assert [a.outcome.status for a in arrivals if a.outcome] == [StoreStatus.STORED] * 3
    assert stored_uids(runtime) == {ds.SOPInstanceUID for ds in datasets}
    for ds, audit in zip(datasets, audits, strict=True):  # each logged by its own request's hook
        assert audit.seen == [ds.SOPInstanceUID]
        assert filed(runtime, ds).read_bytes() == to_bytes(ds)
    assert len(commits) == 1
    assert len(synced_folders) == len(set(synced_folders))  # each folder once
    assert filed(runtime, datasets[0]).parent in synced_folders
    assert filed(runtime, datasets[2]).parent in synced_folders
    assert list(runtime.archive.incoming.iterdir()) == []


def test_a_refused_arrival_costs_the_others_nothing(
    runtime: Runtime, loop_db: LoopDatabase, commits: list[int]
) -> None:
    good, wrong_study, refused_late, also_good = (make_cr(seed=i) for i in range(4))
    audit = Audit(refuse=refused_late.SOPInstanceUID)  # refused after its rows and file
    arrivals = [
        arrival(runtime.archive, to_bytes(good), audit),
        arrival(runtime.archive, to_bytes(wrong_study), audit, study="1.2.3.4"),
        arrival(runtime.archive, to_bytes(refused_late), audit),
        arrival(runtime.archive, to_bytes(also_good), audit),
    ]

    store_all(runtime, loop_db, arrivals)

    outcomes = [a.outcome for a in arrivals]
    assert [o.status if o else None for o in outcomes] == [
        StoreStatus.STORED,
        StoreStatus.FAILED,
        StoreStatus.FAILED,
        StoreStatus.STORED,
    ]
    assert outcomes[1] is not None and "does not match the study" in outcomes[1].reason
    assert outcomes[2] is not None and outcomes[2].reason == "refused by the test"
    assert stored_uids(runtime) == {good.SOPInstanceUID, also_good.SOPInstanceUID}
    assert not filed(runtime, refused_late).exists()  # its savepoint undone, its file too
    assert not filed(runtime, wrong_study).exists()
    assert len(commits) == 1
    assert list(runtime.archive.incoming.iterdir()) == []


def test_a_database_error_after_filing_one_fails_it_and_hands_back_the_rest(
    runtime: Runtime, loop_db: LoopDatabase
) -> None:
    first, broken, last = (make_cr(seed=i) for i in range(3))

    class BrokenLog(Audit):
        def __call__(self, rows: Executes, outcome: StoreOutcome) -> None:
            raise OperationalError("INSERT INTO access_log", {}, Exception("disk I/O error"))

    arrivals = [
        arrival(runtime.archive, to_bytes(first), Audit()),
        arrival(runtime.archive, to_bytes(broken), BrokenLog()),  # fails after its file moved
        arrival(runtime.archive, to_bytes(last), Audit()),
    ]

    store_all(runtime, loop_db, arrivals)

    assert [a.outcome.status if a.outcome else None for a in arrivals] == [
        StoreStatus.FAILED,  # filed in the transaction that failed: undone
        StoreStatus.FAILED,  # its file was filed and removed again: nothing to hand back
        None,
    ]
    assert all(a.outcome and "database error" in a.outcome.reason for a in arrivals[:2])
    assert arrivals[0].outcome and arrivals[0].outcome.sop_instance_uid == first.SOPInstanceUID
    assert arrivals[2].handed_back and arrivals[2].received.path.exists()  # not reached
    assert stored_uids(runtime) == set()
    assert not filed(runtime, first).exists() and not filed(runtime, broken).exists()


def test_an_arrival_whose_file_is_gone_fails_alone(runtime: Runtime, loop_db: LoopDatabase) -> None:
    kept, gone = make_cr(seed=1), make_cr(seed=2)
    arrivals = [arrival(runtime.archive, to_bytes(ds), Audit()) for ds in (gone, kept)]
    arrivals[0].received.path.unlink()  # its request gave up and removed its file

    store_all(runtime, loop_db, arrivals)

    failed = arrivals[0].outcome
    assert failed is not None and failed.status is StoreStatus.FAILED
    assert "could not read this instance back" in failed.reason
    assert stored_uids(runtime) == {kept.SOPInstanceUID}


def test_arrivals_the_loop_should_not_store_are_handed_back_with_their_files(
    runtime: Runtime, loop_db: LoopDatabase
) -> None:
    first = make_cr(seed=1)
    first_bytes = to_bytes(first)
    store_all(runtime, loop_db, [arrival(runtime.archive, first_bytes, Audit())])
    changed = copy.deepcopy(first)
    changed.PatientName = "Other^Name"  # same instance, other bytes: pixels to compare
    compressed = rg1_files()["RG1_J2KR"].read_bytes()  # to be decoded to be checked
    fresh = make_cr(seed=2)
    arrivals = [
        arrival(runtime.archive, to_bytes(changed), Audit()),
        arrival(runtime.archive, compressed, Audit()),
        arrival(runtime.archive, to_bytes(fresh), Audit()),
    ]

    store_all(runtime, loop_db, arrivals)

    assert [a.handed_back for a in arrivals] == [True, True, False]
    assert arrivals[0].outcome is None and arrivals[1].outcome is None
    assert arrivals[0].received.path.exists() and arrivals[1].received.path.exists()
    assert stored_uids(runtime) == {first.SOPInstanceUID, fresh.SOPInstanceUID}
    assert filed(runtime, first).read_bytes() == first_bytes  # the stored copy untouched


def test_with_the_write_turn_taken_every_arrival_is_handed_back(
    runtime: Runtime, loop_db: LoopDatabase
) -> None:
    arrivals = [arrival(runtime.archive, to_bytes(make_cr(seed=i)), Audit()) for i in range(2)]
    holding, release = threading.Event(), threading.Event()

    def hold_turn() -> None:
        with sqlite_driver_transaction(runtime.engine):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_turn)
    holder.start()
    try:
        assert holding.wait(10)
        store_all(runtime, loop_db, arrivals)
    finally:
        release.set()
        holder.join()

    assert all(a.handed_back and a.outcome is None for a in arrivals)
    assert all(a.received.path.exists() for a in arrivals)
    assert stored_uids(runtime) == set()


def test_a_storage_error_fails_what_was_placed_and_leaves_no_row_or_file(
    runtime: Runtime, loop_db: LoopDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    placed = [make_cr(seed=i) for i in range(2)]
    wrong_study = make_cr(seed=9)
    arrivals = [arrival(runtime.archive, to_bytes(ds), Audit()) for ds in placed]
    arrivals.append(arrival(runtime.archive, to_bytes(wrong_study), Audit(), study="1.2.3.4"))

    def broken(_folders: set[Path]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runtime.archive, "sync_folders", broken)
    store_all(runtime, loop_db, arrivals)

    failed = [a.outcome for a in arrivals[:2]]
    assert all(o is not None and o.status is StoreStatus.FAILED for o in failed)
    assert all(o is not None and "storage error" in o.reason for o in failed)
    assert all(o is not None and o.failure is FailureReason.OUT_OF_RESOURCES for o in failed)
    assert arrivals[2].outcome is not None and "does not match" in arrivals[2].outcome.reason
    assert stored_uids(runtime) == set()
    assert not any(filed(runtime, ds).exists() for ds in placed)


def test_a_request_under_load_stores_what_other_requests_queued_meanwhile(
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop_database: LoopDatabase = client.app.state.loop_database  # type: ignore[attr-defined]
    app_archive: Archive = client.app.state.archive  # type: ignore[attr-defined]
    waiting_ds = make_cr(seed=5)
    waiting = arrival(app_archive, to_bytes(waiting_ds), Audit())
    loop_database.arrivals.append(waiting)  # another request's instance, queued
    monkeypatch.setattr(stow_endpoints, "requests_in_flight", lambda: 3)
    mine = make_cr(rows=256, columns=256, seed=6)  # finished in a worker thread, queued
    payload = to_bytes(mine)
    assert len(payload) >= stow_endpoints._THREAD_FINISH_BYTES

    response = client.post(
        "/dicomweb/studies",
        content=multipart_body([payload]),
        headers=stow_headers(integration_token),
    )

    assert response.status_code == 200, response.text
    assert waiting.outcome is not None and waiting.outcome.status is StoreStatus.STORED
    assert stored_uids(runtime) == {waiting_ds.SOPInstanceUID, mine.SOPInstanceUID}
    assert not loop_database.arrivals
