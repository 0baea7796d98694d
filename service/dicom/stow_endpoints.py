"""STOW-RS: ``POST /dicomweb/studies[/{study}]`` with multipart/related application/dicom."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.auth.access_log import record_request_access
from service.auth.dependencies import DicomStorer
from service.auth.service import Principal
from service.db import Executes, session_scope
from service.deps import ArchiveDep, SessionFactoryDep, SettingsDep
from service.dicom.archive import DISK_FULL_REASON, Archive, is_disk_full
from service.dicom.failure import FailureReason
from service.dicom.multipart import MultipartRelatedReader, ReceivedPart, parse_content_type
from service.dicom.store import (
    LOOP_MAX_STORE_BYTES,
    Arrival,
    Audit,
    StoreOutcome,
    StoreStatus,
    store_arrivals,
    store_received,
)
from service.dicom.stow_response import stow_response
from service.dicom.uids import is_valid_uid
from service.errors import (
    BadRequest,
    InsufficientStorage,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.log_config import get_logger
from service.loop_database import LOOP_BUDGET_S, LoopDatabase, ThreadNeeded
from service.middleware import requests_in_flight
from service.request_urls import request_base_url
from service.settings import Settings

if TYPE_CHECKING:
    from service.analysis.runtime import AnalysisServices

log = get_logger(__name__)
router = APIRouter(tags=["DICOMweb STOW-RS"])
DICOM_JSON = "application/dicom+json"
_FEED_BATCH_BYTES = 1 << 20
_THREAD_FINISH_BYTES = 64 << 10  # a body from this size on is finished in a worker thread
_STORE_BATCH_MAX = 8  # instances stored together on the loop (its time budget)


@router.post("/studies", summary="Store instances (STOW-RS)")
async def store_instances(
    request: Request,
    principal: DicomStorer,
    settings: SettingsDep,
    archive: ArchiveDep,
    session_factory: SessionFactoryDep,
) -> JSONResponse:
    return await _store(request, principal, settings, archive, session_factory, None)


@router.post("/studies/{study_instance_uid}", summary="Store instances into one study (STOW-RS)")
async def store_instances_in_study(
    study_instance_uid: str,
    request: Request,
    principal: DicomStorer,
    settings: SettingsDep,
    archive: ArchiveDep,
    session_factory: SessionFactoryDep,
) -> JSONResponse:
    if not is_valid_uid(study_instance_uid):
        raise BadRequest("the study in the URL is not a valid UID")
    return await _store(request, principal, settings, archive, session_factory, study_instance_uid)


async def _store(
    request: Request,
    principal: Principal,
    settings: Settings,
    archive: Archive,
    session_factory: sessionmaker[Session],
    study_instance_uid: str | None,
) -> JSONResponse:
    loop_database: LoopDatabase | None = getattr(request.app.state, "loop_database", None)
    store = _PartStore(settings, archive, session_factory, study_instance_uid, principal, request)
    arrived: list[Arrival] = []

    def queue_arrival(parts: list[ReceivedPart]) -> None:
        """In the worker thread, its file on disk: queue a lone instance for the loop to
        store with others that arrived meanwhile (see ``store_arrivals``)."""
        if loop_database is not None and len(parts) == 1:
            arrival = store.arrival(parts[0])
            if arrival is not None:
                arrived.append(arrival)
                loop_database.arrivals.append(arrival)

    parts = await _receive_parts(
        request, settings, archive, loop_database is not None, queue_arrival
    )
    if arrived and loop_database is not None:
        outcomes = _store_arrived(arrived[0], store, loop_database)
    else:
        outcomes = _store_on_loop(parts, store, loop_database)
    rest = parts[len(outcomes) :]
    analysis: AnalysisServices | None = getattr(request.app.state, "analysis", None)
    if rest or (analysis is not None and analysis.queues_on_arrival(outcomes)):

        def store_rest_and_queue_analyses() -> list[StoreOutcome]:
            # One trip to a worker thread for both: each trip costs more than a short store.
            done = outcomes + [store(part) for part in rest]
            if analysis is not None:
                analysis.on_instances_stored(done)
            return done

        outcomes = await run_in_threadpool(store_rest_and_queue_analyses)
    status, body = stow_response(outcomes, request_base_url(request, settings))
    refused = [o for o in outcomes if not o.ok and o.sop_instance_uid]
    if refused:  # attempts on patient data: logged as the stores are
        await run_in_threadpool(_log_refusals, session_factory, principal, refused, request)
    return JSONResponse(body, status_code=status, media_type=DICOM_JSON)


def _store_on_loop(
    parts: list[ReceivedPart], store: _PartStore, loop_database: LoopDatabase | None
) -> list[StoreOutcome]:
    """Store the leading parts on the event loop (SQLite: see ``loop_database``) while each
    is quick and the write turn free, within the loop's budget; return their outcomes (the
    rest go to a worker thread)."""
    outcomes: list[StoreOutcome] = []
    if loop_database is None:
        return outcomes
    deadline = time.perf_counter() + LOOP_BUDGET_S
    for part in parts:
        try:
            outcomes.append(store(part, loop_database))
        except ThreadNeeded:
            break
        if time.perf_counter() > deadline:
            break
    return outcomes


def _store_arrived(
    arrival: Arrival, store: _PartStore, loop_database: LoopDatabase
) -> list[StoreOutcome]:
    """Store a queued instance on the loop, with the others queued by then (unless another
    request's store took it already); return its outcome, or none when it was handed back
    (the caller stores it in a worker thread)."""
    queue = loop_database.arrivals
    while arrival.outcome is None and not arrival.handed_back and queue:
        batch: list[Arrival] = []
        while queue and len(batch) < _STORE_BATCH_MAX:
            batch.append(queue.popleft())
        store.store_arrivals(batch, loop_database)
    return [] if arrival.outcome is None else [arrival.outcome]


async def _receive_parts(
    request: Request,
    settings: Settings,
    archive: Archive,
    loop_stores: bool,
    on_synced: Callable[[list[ReceivedPart]], None] | None = None,
) -> list[ReceivedPart]:
    """Receive the body's parts into incoming files; ``loop_stores``: the loop may store
    them itself (SQLite), else a worker thread will (which also waits for their fsync).
    ``on_synced`` is called in the worker thread that synced them, if one did."""
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        # Read as it is, a compressed body failed as "malformed multipart" at its first byte.
        raise UnsupportedMediaType(
            f'Content-Encoding "{coding[:40]}" is not supported; send the body uncompressed'
        )
    media_type, params = parse_content_type(request.headers.get("content-type"))
    reader: _BodyReader
    if media_type == "application/dicom":
        reader = _SinglePartReader(archive, settings.max_instance_bytes)
    elif media_type == "multipart/related":
        part_type = params.get("type", "application/dicom").lower()
        if part_type != "application/dicom":
            raise UnsupportedMediaType(
                f'parts of type "{part_type}" are not supported; send '
                'multipart/related; type="application/dicom"'
            )
        reader = MultipartRelatedReader(
            boundary=params.get("boundary", ""),
            archive=archive,
            max_part_bytes=settings.max_instance_bytes,
            max_parts=settings.max_instances_per_request,
        )
    else:
        raise UnsupportedMediaType(
            f'content type "{media_type or "(none)"}" is not supported; send '
            'multipart/related; type="application/dicom"'
        )
    received = 0
    batch: list[bytes] = []  # chunks as received (a worker thread joins those it takes)
    batched = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > settings.max_request_bytes:
                raise PayloadTooLarge(
                    f"request body over the limit of {settings.max_request_bytes} bytes"
                )
            batch.append(chunk)
            batched += len(chunk)
            if batched >= _FEED_BATCH_BYTES:
                # Hashing and writing a large body would stall every other request.
                await run_in_threadpool(_feed, reader, batch, True)  # joined
                batch, batched = [], 0
        if (
            loop_stores
            and _THREAD_FINISH_BYTES <= received <= LOOP_MAX_STORE_BYTES
            and requests_in_flight() > 1
        ):
            # Others wait for the loop, which is to store this body's instance itself:
            # hashing and writing the rest, and waiting for the disk, are done in a worker
            # thread (much of it without the GIL) meanwhile, which then queues the instance
            # for the loop to store with any others that arrived by then. A larger body, or
            # any on a database server, is stored in a worker thread anyway, which does that.
            parts = await run_in_threadpool(_finish, reader, batch, archive, True, on_synced)
        else:
            parts = _finish(reader, batch, archive, sync=False)  # cheaper than a thread hop
    except OSError as exc:
        reader.discard()
        if is_disk_full(exc):
            log.error("stow.archive_disk_full", archive=str(archive.root))
            raise InsufficientStorage(
                f"{DISK_FULL_REASON}: nothing of this request was stored; tell an admin"
            ) from exc
        raise
    except BaseException:
        reader.discard()
        raise
    if not parts:
        raise BadRequest("the request holds no instances")
    return parts


class _BodyReader(Protocol):
    def feed(self, chunk: bytes) -> None: ...
    def finish(self) -> list[ReceivedPart]: ...
    def discard(self) -> None: ...


def _feed(reader: _BodyReader, chunks: list[bytes], joined: bool = False) -> None:
    """Feed chunks to a reader; ``joined``: as one buffer, for a worker thread.

    Parsing, hashing and writing each chunk lets go of the GIL and takes it back several
    times, and in a worker thread each take waits while the event loop holds it: one buffer
    costs a copy and saves most of those waits (4 clients of 512² instances: 1.03-1.08 times
    the rate at 0.92-0.96 of the CPU; 2048²: no change; ``tests/benchmarks/ab.py``). On the
    loop itself nothing waits: the copy alone would be the cost.
    """
    if joined and len(chunks) > 1:
        chunks = [b"".join(chunks)]
    for chunk in chunks:
        reader.feed(chunk)


def _finish(
    reader: _BodyReader,
    chunks: list[bytes],
    archive: Archive,
    sync: bool,
    on_synced: Callable[[list[ReceivedPart]], None] | None = None,
) -> list[ReceivedPart]:
    """Feed the last chunks and return the parts; ``sync``: with their files on disk, then
    handed to ``on_synced``."""
    _feed(reader, chunks, sync)  # joined when synced: that is in a worker thread
    parts = reader.finish()
    if sync:
        for part in parts:
            if part.file is not None:
                part.file = archive.synced(part.file)
        if on_synced is not None:
            on_synced(parts)
    return parts


class _SinglePartReader:
    """A body that is one application/dicom instance (a convenience beside multipart)."""

    def __init__(self, archive: Archive, max_bytes: int) -> None:
        self._writer = archive.writer(max_bytes)
        self._part: ReceivedPart | None = None

    def feed(self, chunk: bytes) -> None:
        self._writer.write(chunk)

    def finish(self) -> list[ReceivedPart]:
        part = ReceivedPart(content_type="application/dicom")
        try:
            part.file = self._writer.finish()
        except PayloadTooLarge as exc:
            part.error = exc
        self._part = part
        return [part] if part.file is None or part.file.size else []

    def discard(self) -> None:
        self._writer.abort()
        if self._part is not None and self._part.file is not None:
            self._part.file.path.unlink(missing_ok=True)


class _PartStore:
    """Store one received part of a request: its outcome; the part's file is consumed."""

    def __init__(
        self,
        settings: Settings,
        archive: Archive,
        session_factory: sessionmaker[Session],
        study_instance_uid: str | None,
        principal: Principal,
        request: Request,
    ) -> None:
        self._settings = settings
        self._archive = archive
        self._session_factory = session_factory
        self._study_instance_uid = study_instance_uid
        self._audit = _access_recorder(principal, request)

    def arrival(self, part: ReceivedPart) -> Arrival | None:
        """Return a received part to store with others (``store_arrivals``), or None for one
        refused as it is (no file, another content type): ``__call__`` answers those."""
        if part.file is None or part.content_type != "application/dicom":
            return None
        return Arrival(
            received=part.file,
            require_image=not self._settings.accept_non_image,
            expected_study_uid=self._study_instance_uid,
            audit=self._audit,
        )

    def store_arrivals(self, arrivals: list[Arrival], loop_database: LoopDatabase) -> None:
        """Store queued instances of any requests together on the loop (each keeps its own
        request's checks and access-log row)."""
        store_arrivals(
            session_factory=self._session_factory,
            archive=self._archive,
            arrivals=arrivals,
            loop_database=loop_database,
        )

    def __call__(
        self, part: ReceivedPart, loop_database: LoopDatabase | None = None
    ) -> StoreOutcome:
        """``loop_database``: store on the event loop (see ``store_received``); ThreadNeeded
        when the part must be stored in a worker thread instead, its file kept."""
        if part.file is None:
            reason = part.error.message if part.error else "part could not be read"
            code = (
                FailureReason.OUT_OF_RESOURCES
                if isinstance(part.error, PayloadTooLarge)
                else FailureReason.CANNOT_UNDERSTAND
            )
            return StoreOutcome(StoreStatus.FAILED, reason=reason, failure=code)
        if part.content_type != "application/dicom":
            part.file.path.unlink(missing_ok=True)
            return StoreOutcome(
                StoreStatus.FAILED,
                reason=f'part content type "{part.content_type}" is not application/dicom',
                failure=FailureReason.CANNOT_UNDERSTAND,
            )
        return store_received(
            session_factory=self._session_factory,
            archive=self._archive,
            received=part.file,
            require_image=not self._settings.accept_non_image,
            expected_study_uid=self._study_instance_uid,
            audit=self._audit,
            loop_database=loop_database,
        )


def _access_recorder(principal: Principal, request: Request) -> Audit:
    """Return the hook that writes a store's access-log row inside its transaction."""

    def record(session: Executes, outcome: StoreOutcome) -> None:
        record_request_access(
            request,
            principal,
            "dicom.store",
            session=session,
            study_instance_uid=outcome.study_instance_uid,
            series_instance_uid=outcome.series_instance_uid,
            sop_instance_uid=outcome.sop_instance_uid,
        )

    return record


def _log_refusals(
    session_factory: sessionmaker[Session],
    principal: Principal,
    refused: list[StoreOutcome],
    request: Request,
) -> None:
    """Log refused instances (each naming its SOP instance). When the database cannot take
    the rows (the error that refused them, say), the client still gets each reason."""
    try:
        with session_scope(session_factory) as session:
            for outcome in refused:
                record_request_access(
                    request,
                    principal,
                    "dicom.store.refused",
                    session=session,
                    status_code=409,
                    study_instance_uid=outcome.study_instance_uid or None,
                    series_instance_uid=outcome.series_instance_uid or None,
                    sop_instance_uid=outcome.sop_instance_uid,
                )
    except SQLAlchemyError as exc:
        log.error("access_log.refusals_not_recorded", error=type(exc).__name__, count=len(refused))
