"""Store one received instance: check it, index it, file it; idempotent on SOP Instance UID.

Each received instance is its own transaction, so one bad instance never costs the others;
objects that belong together (the outputs of one analysis) can be stored in one transaction,
all or none. A file is renamed into place before the commit: a crash in between leaves a stray
file that no row points to (harmless, overwritten by the next store), never a row without its
file.

On SQLite the event loop may store an instance itself (``loop_database``): one quick to check
(its pixels need no decoding), whose write turn is free at once. Anything else raises
``ThreadNeeded`` before a byte is written, and the caller stores it in a worker thread. Under
load, instances of different requests whose files reached the disk meanwhile are stored by the
loop together (``store_arrivals``): one commit and one fsync per folder for them all, which is
what the loop's stores spend most of their time waiting for.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.db import Executes, session_scope, sqlite_driver_transaction
from service.dicom import repository
from service.dicom.archive import Archive, ReceivedFile
from service.dicom.failure import FailureReason, InstanceRejected
from service.dicom.parse import (
    InstanceAttributes,
    ParsedInstance,
    parse_instance,
    parse_plain_file,
    pixel_fingerprint,
    read_dataset,
)
from service.dicom.uids import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
from service.log_config import get_logger
from service.loop_database import LoopDatabase, ThreadNeeded
from service.orm.base import utcnow
from service.sqlite_compiled import DriverTransaction

log = get_logger(__name__)

# The largest instance the event loop stores itself: its fsync and its checks stay short.
LOOP_MAX_STORE_BYTES = 4 << 20
_HEAD_BYTES = 1024  # where a file names its transfer syntax (the file meta group)


class StoreStatus(StrEnum):
    STORED = "stored"
    ALREADY_STORED = "already-stored"
    FAILED = "failed"


@dataclass(frozen=True)
class StoreOutcome:
    status: StoreStatus
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    reason: str = ""
    failure: FailureReason | None = None

    @property
    def ok(self) -> bool:
        return self.status is not StoreStatus.FAILED


# Called with where the storing transaction's rows go, before its commit.
Audit = Callable[[Executes, StoreOutcome], None]


def store_received(
    *,
    session_factory: sessionmaker[Session],
    archive: Archive,
    received: ReceivedFile,
    require_image: bool = True,
    expected_study_uid: str | None = None,
    audit: Audit | None = None,
    loop_database: LoopDatabase | None = None,
) -> StoreOutcome:
    """Store an incoming file and return what happened; the incoming file is consumed.

    ``audit`` runs inside the storing transaction for instances stored or already stored,
    so the access-log row commits with the instance or not at all.

    ``loop_database``: store on the event loop, on its connection; raise ThreadNeeded, the
    incoming file kept and nothing written, for an instance the loop should not store.
    """
    handed_over = False
    try:
        parsed = (
            parse_instance(received.path, require_image=require_image, known=_known(received))
            if loop_database is None
            else _quick_parse(received, require_image)
        )
        _check_study(parsed, expected_study_uid)
        [outcome] = _index_and_file(
            session_factory, archive, [(received, parsed)], audit, loop_database
        )
        return outcome
    except ThreadNeeded:
        handed_over = True
        raise
    except InstanceRejected as rejected:
        log.info("ingest.rejected", failure=rejected.code.name)
        return StoreOutcome(
            StoreStatus.FAILED,
            sop_class_uid=rejected.sop_class_uid,
            sop_instance_uid=rejected.sop_instance_uid,
            reason=rejected.reason,
            failure=rejected.code,
        )
    finally:
        if not handed_over:
            received.path.unlink(missing_ok=True)


def _check_study(parsed: ParsedInstance, expected_study_uid: str | None) -> None:
    if expected_study_uid and parsed.study.study_instance_uid != expected_study_uid:
        raise InstanceRejected(
            f"StudyInstanceUID {parsed.study.study_instance_uid} does not match the "
            f"study in the request URL ({expected_study_uid})",
            FailureReason.STUDY_INSTANCE_UID_MISMATCH,
            sop_class_uid=parsed.instance.sop_class_uid,
            sop_instance_uid=parsed.instance.sop_instance_uid,
        )


@dataclass
class Arrival:
    """A received instance waiting to be stored with others (``store_arrivals``)."""

    received: ReceivedFile
    require_image: bool
    expected_study_uid: str | None
    audit: Audit | None
    outcome: StoreOutcome | None = None  # set once stored or refused
    handed_back: bool = False  # not stored here, its file kept: its caller stores it itself


def store_arrivals(
    *,
    session_factory: sessionmaker[Session],
    archive: Archive,
    arrivals: Sequence[Arrival],
    loop_database: LoopDatabase,
) -> None:
    """Store instances received by different requests on the event loop, in one transaction:
    one commit (one fsync of the database) and one fsync per folder for them all, before the
    commit; set each one's outcome, or hand it back.

    Each is checked and indexed as ``store_received`` does on the loop, inside a savepoint:
    one refused (a reason of its own) costs the others nothing. One that needs a worker
    thread (large, compressed, a resend whose pixels must be compared) is handed back with
    its file, as is every one when the write turn is not free. A database or storage error
    fails those it placed, as a lone store's does, and hands the others back.
    """
    if not arrivals:
        return
    folders: set[Path] = set()
    placed: list[tuple[str, str]] = []
    stored: list[tuple[Arrival, StoreOutcome]] = []
    try:
        with loop_database.store_transaction() as transaction:
            index = repository.DriverIndex(transaction)
            for arrival in arrivals:
                _store_one_arrival(index, transaction, archive, arrival, folders, placed, stored)
            archive.sync_folders(folders)  # every file's folder on disk before any row is
    except ThreadNeeded:  # the write turn was not free: nothing was written
        for arrival in arrivals:
            if arrival.outcome is None:
                arrival.handed_back = True
        return
    except (SQLAlchemyError, OSError) as exc:
        log.error("ingest.batch_error", error=type(exc).__name__, instances=len(placed))
        remove_unclaimed(session_factory, archive, placed)
        lost = {id(arrival): outcome for arrival, outcome in stored}
        for arrival in arrivals:
            if (would_be := lost.get(id(arrival))) is not None:
                arrival.outcome = dataclasses.replace(  # naming the instance it refuses
                    _storage_failure(exc),
                    sop_class_uid=would_be.sop_class_uid,
                    sop_instance_uid=would_be.sop_instance_uid,
                )
            elif arrival.outcome is None:  # not reached, or its own step failed
                _hand_back(arrival, exc)
        return
    for arrival, outcome in stored:
        arrival.outcome = outcome
        event = "ingest.stored" if outcome.status is StoreStatus.STORED else "ingest.already_stored"
        log.info(event, size=arrival.received.size)


def _store_one_arrival(
    index: repository.DriverIndex,
    transaction: DriverTransaction,
    archive: Archive,
    arrival: Arrival,
    folders: set[Path],
    placed: list[tuple[str, str]],
    stored: list[tuple[Arrival, StoreOutcome]],
) -> None:
    received = arrival.received
    try:
        parsed = _read_arrival(arrival)
        _check_study(parsed, arrival.expected_study_uid)
        progress = _Progress(parsed.instance)
        with transaction.savepoint():
            try:
                [outcome] = _index_each(
                    index, archive, [(received, parsed)], arrival.audit, progress, True, folders
                )
            except BaseException:
                for _sop, relative in progress.placed:  # its row is undone: so is its file
                    archive.remove(relative)
                raise
    except ThreadNeeded as exc:
        _hand_back(arrival, exc)
        return
    except InstanceRejected as rejected:
        log.info("ingest.rejected", failure=rejected.code.name)
        received.path.unlink(missing_ok=True)
        arrival.outcome = StoreOutcome(
            StoreStatus.FAILED,
            sop_class_uid=rejected.sop_class_uid,
            sop_instance_uid=rejected.sop_instance_uid,
            reason=rejected.reason,
            failure=rejected.code,
        )
        return
    placed.extend(progress.placed)
    stored.append((arrival, outcome))
    received.path.unlink(missing_ok=True)  # gone already when placed: only a resend's is left


def _hand_back(arrival: Arrival, exc: Exception) -> None:
    """Leave an arrival to its caller's worker thread while its incoming file is there to
    store; fail it if its file was placed and removed again (nothing left to store)."""
    if arrival.received.path.exists():
        arrival.handed_back = True
    else:
        arrival.outcome = _storage_failure(exc)


def _read_arrival(arrival: Arrival) -> ParsedInstance:
    """Parse a queued instance; one whose file cannot be read (its request gave up and
    removed it, say) is refused alone rather than failing the others' transaction."""
    try:
        os.stat(arrival.received.path)  # its header is in memory: is the file still there?
        return _quick_parse(arrival.received, arrival.require_image)
    except OSError as exc:
        log.error("ingest.arrival_unreadable", error=type(exc).__name__)
        raise InstanceRejected(
            "the archive could not read this instance back (storage error); nothing was stored",
            FailureReason.OUT_OF_RESOURCES,
        ) from exc


def _storage_failure(exc: Exception) -> StoreOutcome:
    database = not isinstance(exc, OSError)
    return StoreOutcome(
        StoreStatus.FAILED,
        reason=(
            "the archive could not record this instance (database error); nothing was stored"
            if database
            else "the archive could not write this instance (storage error); nothing was stored"
        ),
        failure=FailureReason.PROCESSING_FAILURE if database else FailureReason.OUT_OF_RESOURCES,
    )


def _quick_parse(received: ReceivedFile, require_image: bool) -> ParsedInstance:
    """Parse an incoming file for a store on the event loop; raise ThreadNeeded for one slow
    to check: large, deflated (inflated whole to be read) or with encapsulated pixel data
    (decoded to be checked)."""
    if received.size > LOOP_MAX_STORE_BYTES:
        raise ThreadNeeded("a large instance")
    plain = parse_plain_file(received.path, require_image=require_image, known=_known(received))
    if plain is not None:
        return plain
    dataset = _quick_dataset(received)
    return parse_instance(received.path, require_image=require_image, dataset=dataset)


def _known(received: ReceivedFile) -> tuple[bytes, int] | None:
    """A received file's head and size, when its writer kept the head in memory."""
    return None if received.head is None else (received.head, received.size)


def _quick_dataset(received: ReceivedFile) -> Dataset:
    """Read a file's data set with pydicom, for a store on the event loop (``_quick_parse``)."""
    if received.head is not None:
        head = received.head[:_HEAD_BYTES]
    else:
        with received.path.open("rb") as f:
            head = f.read(_HEAD_BYTES)
    if DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.encode() in head:
        raise ThreadNeeded("a deflated data set")
    dataset = read_dataset(received.path)
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    uid = UID(str(transfer_syntax)) if transfer_syntax is not None else None
    # A UID that names no transfer syntax is refused by the parse that follows.
    if uid is not None and uid.is_transfer_syntax and uid.is_encapsulated:
        raise ThreadNeeded("encapsulated pixel data")
    return dataset


def store_received_together(
    *,
    session_factory: sessionmaker[Session],
    archive: Archive,
    received: Sequence[ReceivedFile],
    require_image: bool = True,
    audit: Audit | None = None,
    datasets: Sequence[Dataset | None] | None = None,
) -> list[StoreOutcome]:
    """Store files that belong together in one transaction, all or none, and return each
    one's outcome (all failed, with the reason, when one is refused); the files are consumed.

    One commit (and one fsync of the database) for the lot: what makes filing an analysis's
    four result objects cheap. ``datasets``, when the caller wrote the files from data sets
    in memory, are those data sets, in the same order, None for a file to read back (see
    ``parse_instance``).
    """
    if datasets is not None and len(datasets) != len(received):
        raise ValueError(f"{len(datasets)} data sets for {len(received)} files")
    in_memory: Sequence[Dataset | None] = datasets or [None] * len(received)
    try:
        items = [
            (r, parse_instance(r.path, require_image=require_image, dataset=ds, known=_known(r)))
            for r, ds in zip(received, in_memory, strict=True)
        ]
    except InstanceRejected as rejected:
        for r in received:
            r.path.unlink(missing_ok=True)
        return _all_failed(rejected, len(received))
    return store_parsed_together(
        session_factory=session_factory, archive=archive, items=items, audit=audit
    )


def store_parsed_together(
    *,
    session_factory: sessionmaker[Session],
    archive: Archive,
    items: Sequence[tuple[ReceivedFile, ParsedInstance]],
    audit: Audit | None = None,
) -> list[StoreOutcome]:
    """Store files already parsed (``parse_instance``) in one transaction, all or none, as
    ``store_received_together`` does; the files are consumed."""
    try:
        return _index_and_file(session_factory, archive, items, audit)
    except InstanceRejected as rejected:
        return _all_failed(rejected, len(items))
    finally:
        for r, _parsed in items:
            r.path.unlink(missing_ok=True)


def _all_failed(rejected: InstanceRejected, count: int) -> list[StoreOutcome]:
    log.info("ingest.rejected", failure=rejected.code.name, together=count)
    return [
        StoreOutcome(
            StoreStatus.FAILED,
            sop_class_uid=rejected.sop_class_uid,
            sop_instance_uid=rejected.sop_instance_uid,
            reason=rejected.reason,
            failure=rejected.code,
        )
    ] * count


def _index_and_file(
    session_factory: sessionmaker[Session],
    archive: Archive,
    items: Sequence[tuple[ReceivedFile, ParsedInstance]],
    audit: Audit | None,
    loop_database: LoopDatabase | None = None,
) -> list[StoreOutcome]:
    """Index and file received instances in one transaction; raise InstanceRejected (and
    leave nothing of them behind) when one cannot be stored, ThreadNeeded (nothing written)
    when the loop's write turn is not free or the check would be long."""
    progress = _Progress(items[0][1].instance)
    try:
        for received, _parsed in items:
            archive.sync(received)  # the slow part of durability, before any lock is taken
        engine = session_factory.kw.get("bind")
        if loop_database is not None:
            with loop_database.store_transaction() as transaction:
                outcomes = _index_each(
                    repository.DriverIndex(transaction), archive, items, audit, progress, True
                )
        elif len(items) == 1 and isinstance(engine, Engine) and engine.dialect.name == "sqlite":
            # The common case, one instance: its few statements run on the driver, which
            # costs a fraction of a session's overhead.
            with sqlite_driver_transaction(engine) as transaction:
                outcomes = _index_each(
                    repository.DriverIndex(transaction), archive, items, audit, progress
                )
        elif len(items) == 1 and isinstance(engine, Engine) and engine.dialect.name == "postgresql":
            with engine.begin() as connection:  # on a connection: less than a session costs
                outcomes = _index_each(
                    repository.ServerIndex(connection), archive, items, audit, progress
                )
        else:
            with session_scope(session_factory) as session:
                index = repository.SessionIndex(session)
                outcomes = _index_each(index, archive, items, audit, progress)
    except InstanceRejected:
        remove_unclaimed(session_factory, archive, progress.placed)
        raise
    except SQLAlchemyError as exc:
        log.error("ingest.database_error", error=type(exc).__name__)
        remove_unclaimed(session_factory, archive, progress.placed)
        raise InstanceRejected(
            "the archive could not record this instance (database error); nothing was stored",
            FailureReason.PROCESSING_FAILURE,
            sop_class_uid=progress.current.sop_class_uid,
            sop_instance_uid=progress.current.sop_instance_uid,
        ) from exc
    except OSError as exc:
        log.error("ingest.file_error", error=type(exc).__name__)
        remove_unclaimed(session_factory, archive, progress.placed)
        raise InstanceRejected(
            "the archive could not write this instance (storage error); nothing was stored",
            FailureReason.OUT_OF_RESOURCES,
            sop_class_uid=progress.current.sop_class_uid,
            sop_instance_uid=progress.current.sop_instance_uid,
        ) from exc
    for (received, _parsed), outcome in zip(items, outcomes, strict=True):
        stored = outcome.status is StoreStatus.STORED
        log.info("ingest.stored" if stored else "ingest.already_stored", size=received.size)
    return outcomes


@dataclass
class _Progress:
    """How far a storing transaction got: the instance at hand, and the files it filed."""

    current: InstanceAttributes
    # (SOP Instance UID, relative path) of the files filed so far
    placed: list[tuple[str, str]] = field(default_factory=list)


_Index = repository.SessionIndex | repository.DriverIndex


def _index_each(
    index: _Index,
    archive: Archive,
    items: Sequence[tuple[ReceivedFile, ParsedInstance]],
    audit: Audit | None,
    progress: _Progress,
    on_loop: bool = False,
    folders_to_sync: set[Path] | None = None,
) -> list[StoreOutcome]:
    """Index and file each instance in the index's transaction; return their outcomes
    (``folders_to_sync``: see ``Archive.place``)."""
    outcomes: list[StoreOutcome] = []
    index.lock([f"sop:{p.instance.sop_instance_uid}" for _, p in items])
    for received, parsed in items:
        current = progress.current = parsed.instance
        relative = archive.relative_path(
            parsed.study.study_instance_uid,
            parsed.series.series_instance_uid,
            current.sop_instance_uid,
        )
        existing = index.stored_copy(current.sop_instance_uid)
        if existing is not None:
            if on_loop and existing.sha256 != received.sha256:
                raise ThreadNeeded("comparing the pixels of two copies decodes both")
            _check_same_instance(archive, received, parsed, existing)
            status = StoreStatus.ALREADY_STORED
        else:
            series_pk = _series_for(index, parsed)
            index.add_instance(_instance_values(parsed, series_pk, relative, received))
            archive.place(received, relative, folders_to_sync)
            progress.placed.append((current.sop_instance_uid, relative))
            status = StoreStatus.STORED
        outcome = _outcome(parsed, status)
        if audit is not None:
            audit(index.rows, outcome)  # same transaction: no store without its log row
        outcomes.append(outcome)
    return outcomes


def remove_unclaimed(
    session_factory: sessionmaker[Session], archive: Archive, placed: list[tuple[str, str]]
) -> None:
    """Delete files filed for instances, (SOP Instance UID, relative path), except any whose
    instance a row holds now: what a failed transaction had filed, or old strays (see
    ``archive_check``).

    The failed transaction has ended, and its locks with it: a concurrent store of the same
    instance may meanwhile have filed its own copy at the same path and committed its row.
    Looking under that instance's lock keeps such a file. When even the look fails, the files
    stay: a stray file that no row points to is harmless (the next store of that instance
    overwrites it), a row without its file is lost data.
    """
    if not placed:
        return
    try:
        with session_scope(session_factory) as session:
            repository.lock_keys(session, [f"sop:{sop}" for sop, _relative in placed])
            for sop, relative in placed:
                if repository.get_stored_copy(session, sop) is None:
                    archive.remove(relative)
    except (SQLAlchemyError, OSError) as exc:
        log.error("ingest.cleanup_failed", error=type(exc).__name__, files=len(placed))


def _series_for(index: _Index, parsed: ParsedInstance) -> uuid.UUID:
    """Return the primary key of the instance's series, created (with study and patient)
    if new.

    Raises InstanceRejected when the UIDs contradict what is stored: a series under another
    study, or a study under another patient.
    """
    owner = index.series_owner(parsed.series.series_instance_uid)
    if owner is None:
        # Creating rows others may be creating too: lock them (PostgreSQL), then look again.
        index.lock(
            [
                f"patient:{parsed.patient.patient_id}|{parsed.patient.issuer_of_patient_id}",
                f"study:{parsed.study.study_instance_uid}",
                f"series:{parsed.series.series_instance_uid}",
            ],
        )
        owner = index.series_owner(parsed.series.series_instance_uid)
    if owner is not None:
        _check_owner(parsed, owner.study_instance_uid, owner.patient_id, owner.issuer_of_patient_id)
        return owner.series_pk
    series_pk = index.new_series(parsed)
    if series_pk is None:
        raise _rejected(
            parsed,
            f"StudyInstanceUID {parsed.study.study_instance_uid} is already stored for "
            "another PatientID",
        )
    return series_pk


def _check_owner(parsed: ParsedInstance, study_uid: str, patient_id: str, issuer: str) -> None:
    if study_uid != parsed.study.study_instance_uid:
        raise _rejected(
            parsed,
            f"SeriesInstanceUID {parsed.series.series_instance_uid} is already stored in "
            "another study",
        )
    if (patient_id, issuer) != (parsed.patient.patient_id, parsed.patient.issuer_of_patient_id):
        raise _rejected(
            parsed, f"StudyInstanceUID {study_uid} is already stored for another PatientID"
        )


def _instance_values(
    parsed: ParsedInstance, series_pk: uuid.UUID, relative: str, received: ReceivedFile
) -> dict[str, Any]:
    inst = parsed.instance
    return {
        "id": uuid.uuid4(),
        "created_at": utcnow(),
        "sop_instance_uid": inst.sop_instance_uid,
        "series_pk": series_pk,
        "sop_class_uid": inst.sop_class_uid,
        "instance_number": inst.instance_number,
        "rows": inst.rows,
        "columns": inst.columns,
        "number_of_frames": inst.number_of_frames,
        "bits_allocated": inst.bits_allocated,
        "photometric_interpretation": inst.photometric_interpretation,
        "view_position": inst.view_position,
        "transfer_syntax_uid": inst.transfer_syntax_uid,
        "file_path": relative,
        "file_size": received.size,
        "sha256": received.sha256,
        "dicom_json": parsed.dicom_json,
    }


def _outcome(parsed: ParsedInstance, status: StoreStatus) -> StoreOutcome:
    return StoreOutcome(
        status,
        sop_class_uid=parsed.instance.sop_class_uid,
        sop_instance_uid=parsed.instance.sop_instance_uid,
        study_instance_uid=parsed.study.study_instance_uid,
        series_instance_uid=parsed.series.series_instance_uid,
    )


def _check_same_instance(
    archive: Archive,
    received: ReceivedFile,
    parsed: ParsedInstance,
    stored: repository.StoredCopy,
) -> None:
    """Accept a resend of a stored instance; raise InstanceRejected if it is different."""
    if stored.sha256 == received.sha256:
        return
    stored_path = archive.path(stored.file_path)
    try:
        same = pixel_fingerprint(received.path) == pixel_fingerprint(stored_path)
    except InstanceRejected:
        same = False
    if not same:
        raise InstanceRejected(
            f"SOP Instance {parsed.instance.sop_instance_uid} is already stored with different "
            "content (attributes or pixels differ); the stored copy was kept unchanged",
            FailureReason.DUPLICATE_SOP_INSTANCE,
            sop_class_uid=parsed.instance.sop_class_uid,
            sop_instance_uid=parsed.instance.sop_instance_uid,
        )


def _rejected(parsed: ParsedInstance, reason: str) -> InstanceRejected:
    return InstanceRejected(
        reason,
        FailureReason.DUPLICATE_SOP_INSTANCE,
        sop_class_uid=parsed.instance.sop_class_uid,
        sop_instance_uid=parsed.instance.sop_instance_uid,
    )
