"""WADO-RS retrieve (PS3.18 10.4): instances, metadata, rendered images and frames.

HTTP only: Accept negotiation (PS3.18 8.7) and responses. Lookups, transcoding and frame
extraction are in ``retrieve``; image maths in ``render``. Endpoints are plain ``def`` because
they read files and decode pixels (FastAPI runs them in its thread pool), except the retrieve
of stored instances and of metadata: on SQLite the event loop answers those itself when it
need not wait (a thread hop cost more than such a retrieve's own work; see ``loop_database``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from service.auth.access_log import commit_request_access, record_request_access
from service.auth.dependencies import DicomReader
from service.auth.service import Principal
from service.deps import ArchiveDep, SessionFactoryDep
from service.dicom import render, retrieve
from service.dicom.archive import Archive
from service.dicom.multipart import iter_multipart_bytes, new_boundary, parse_content_type
from service.dicom.retrieve import ANY, AS_STORED, Target
from service.errors import BadRequest, NotAcceptable
from service.log_config import get_logger
from service.loop_database import LoopDatabase, LoopTooLong

log = get_logger(__name__)
router = APIRouter(tags=["DICOMweb WADO-RS"])

STUDY = "/studies/{study_instance_uid}"
SERIES = STUDY + "/series/{series_instance_uid}"
INSTANCE = SERIES + "/instances/{sop_instance_uid}"
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
# Metadata of at most this many instances may be answered by the event loop (SQLite).
LOOP_MAX_METADATA = 16
_JSON_TYPES = frozenset({DICOM_JSON, "application/json", "application/*", "*/*"})


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept header, with its parameters (q removed) and weight."""

    media_type: str
    params: dict[str, str]
    q: float


def parse_accept(request: Request) -> list[MediaRange]:
    """Return the acceptable media ranges, most preferred first; ``*/*`` when none is given.

    The ``accept`` query parameter (PS3.18 8.3.3.1, for clients such as an HTML ``img`` that
    cannot set headers) takes the place of the Accept header when present.
    """
    header = request.query_params.get("accept") or request.headers.get("accept") or ""
    ranges: list[MediaRange] = []
    for piece in _split_outside_quotes(header):
        media_type, params = parse_content_type(piece)
        if not media_type:
            continue
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            raise BadRequest(f"Accept has a malformed q value in {media_type!r}") from None
        if q > 0:
            ranges.append(MediaRange(media_type, params, q))
    if not header.strip():
        ranges.append(MediaRange(ANY, {}, 1.0))
    return sorted(ranges, key=lambda r: -r.q)  # sorted() is stable: ties keep header order


def _split_outside_quotes(header: str) -> list[str]:
    """Return the comma-separated pieces of a header, ignoring commas inside quotes."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return [p.strip() for p in pieces if p.strip()]


def dicom_transfer_syntaxes(ranges: list[MediaRange]) -> list[str]:
    """Return the transfer syntaxes acceptable for application/dicom parts, preferred first.

    A missing transfer-syntax parameter means "as stored" (Vigil's choice: PS3.18 would
    default to Explicit VR Little Endian and force decompression of compressed files).
    """
    accepted: list[str] = []
    for r in ranges:
        if r.media_type in (ANY, "multipart/*"):
            accepted.append(AS_STORED)
        elif r.media_type == "multipart/related" and r.params.get("type", DICOM).lower() == DICOM:
            accepted.append(r.params.get("transfer-syntax", "").strip() or AS_STORED)
    if not accepted:
        raise NotAcceptable('instances are sent as multipart/related; type="application/dicom"')
    return accepted


def frame_media_types(ranges: list[MediaRange]) -> list[tuple[str, str | None]]:
    """Return the (part media type, transfer syntax or None) pairs acceptable for frames."""
    accepted: list[tuple[str, str | None]] = []
    for r in ranges:
        if r.media_type in (ANY, "multipart/*"):
            accepted.append((ANY, None))
        elif r.media_type == "multipart/related":
            part_type = r.params.get("type", retrieve.OCTET_STREAM).lower()
            accepted.append((part_type, r.params.get("transfer-syntax", "").strip() or None))
    if not accepted:
        raise NotAcceptable(
            'frames are sent as multipart/related; type="application/octet-stream" '
            "or in their stored compressed media type"
        )
    return accepted


def rendered_format(ranges: list[MediaRange]) -> render.ImageFormat:
    """Return the image format to render: the first acceptable of PNG (default) and JPEG."""
    for r in ranges:
        if r.media_type in (ANY, "image/*", "image/png"):
            return render.ImageFormat.PNG
        if r.media_type == "image/jpeg":
            return render.ImageFormat.JPEG
    raise NotAcceptable("rendered images are available as image/png or image/jpeg")


def _check_json_accept(ranges: list[MediaRange]) -> None:
    if not any(r.media_type in _JSON_TYPES for r in ranges):
        raise NotAcceptable("metadata is available as application/dicom+json only")


def _find(
    factory: sessionmaker[Session], archive: Archive, target: Target, *, with_metadata: bool = False
) -> list[retrieve.Located]:
    """Look the target's instances up read-only (no write lock held)."""
    return retrieve.find_instances(
        engine=factory.kw["bind"], archive=archive, target=target, with_metadata=with_metadata
    )


def _record(principal: Principal, request: Request, action: str, target: Target, n: int) -> None:
    """Commit the access-log row of a retrieve, in a short transaction of its own (files
    are read and pixels decoded before, outside any transaction)."""
    record_request_access(
        request,
        principal,
        action,
        study_instance_uid=target.study,
        series_instance_uid=target.series,
        sop_instance_uid=target.instance,
        result_count=n,
    )


def _find_on_loop(
    request: Request, archive: Archive, target: Target, *, with_metadata: bool = False
) -> list[retrieve.Located] | None:
    """Look the target's instances up on the event loop (SQLite: see ``loop_database``);
    None when a worker thread must: no loop connection (a database server), or the lookup
    ran past the loop's budget."""
    loop_database: LoopDatabase | None = getattr(request.app.state, "loop_database", None)
    if loop_database is None:
        return None
    try:
        with loop_database.bounded():
            return retrieve.find_instances(
                engine=loop_database.engine,
                archive=archive,
                target=target,
                with_metadata=with_metadata,
            )
    except LoopTooLong:
        return None


async def _commit(
    principal: Principal, request: Request, action: str, target: Target, n: int
) -> None:
    """``_record`` on the event loop (see ``commit_request_access``)."""
    await commit_request_access(
        request,
        principal,
        action,
        study_instance_uid=target.study,
        series_instance_uid=target.series,
        sop_instance_uid=target.instance,
        result_count=n,
    )


# --- instances -------------------------------------------------------------------------------


@router.get(STUDY, summary="Retrieve a study's instances (WADO-RS)")
async def retrieve_study(
    study_instance_uid: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
) -> Response:
    target = Target(study_instance_uid)
    return await _instances(target, request, principal, factory, archive)


@router.get(SERIES, summary="Retrieve a series' instances (WADO-RS)")
async def retrieve_series(
    study_instance_uid: str,
    series_instance_uid: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
) -> Response:
    target = Target(study_instance_uid, series_instance_uid)
    return await _instances(target, request, principal, factory, archive)


@router.get(INSTANCE, summary="Retrieve one instance (WADO-RS)")
async def retrieve_instance(
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
) -> Response:
    target = Target(study_instance_uid, series_instance_uid, sop_instance_uid)
    return await _instances(target, request, principal, factory, archive)


async def _instances(
    target: Target,
    request: Request,
    principal: Principal,
    factory: sessionmaker[Session],
    archive: Archive,
) -> Response:
    """Return the multipart/related application/dicom response of the target's instances.

    On SQLite the event loop looks them up and, when the page cache holds their files, reads
    them and answers itself (see ``loop_database``); else a worker thread does what is left.
    """
    accepted = dicom_transfer_syntaxes(parse_accept(request))
    located = _find_on_loop(request, archive, target)
    if located is None:
        return await run_in_threadpool(
            _instances_in_thread, target, accepted, request, principal, factory, archive
        )
    parts = retrieve.plan_instance_parts(located, accepted)
    boundary = new_boundary()
    body = retrieve.cached_instance_body(parts, boundary)
    if body is None:
        return await run_in_threadpool(_instances_response, target, parts, request, principal)
    await _commit(principal, request, "dicom.retrieve", target, len(parts))
    log.info("wado.instances", count=len(parts), transcoded=0)
    return Response(body, media_type=_instances_media_type(boundary))


def _instances_in_thread(
    target: Target,
    accepted: list[str],
    request: Request,
    principal: Principal,
    factory: sessionmaker[Session],
    archive: Archive,
) -> Response:
    parts = retrieve.plan_instance_parts(_find(factory, archive, target), accepted)
    return _instances_response(target, parts, request, principal)


def _instances_response(
    target: Target, parts: list[retrieve.InstancePart], request: Request, principal: Principal
) -> Response:
    """Log the retrieve, then answer with its parts (in one piece, or streamed when large)."""
    _record(principal, request, "dicom.retrieve", target, len(parts))
    log.info("wado.instances", count=len(parts), transcoded=sum(1 for p in parts if p.transcode))
    boundary = new_boundary()
    media_type = _instances_media_type(boundary)
    whole = retrieve.whole_instance_body(parts, boundary)
    if whole is not None:
        return Response(whole, media_type=media_type)
    return StreamingResponse(retrieve.iter_instance_body(parts, boundary), media_type=media_type)


def _instances_media_type(boundary: str) -> str:
    return f'multipart/related; type="{DICOM}"; boundary={boundary}'


# --- metadata --------------------------------------------------------------------------------


@router.get(STUDY + "/metadata", summary="Retrieve a study's metadata (WADO-RS)")
async def study_metadata(
    study_instance_uid: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
) -> JSONResponse:
    target = Target(study_instance_uid)
    return await _metadata(target, request, principal, factory, archive)


@router.get(SERIES + "/metadata", summary="Retrieve a series' metadata (WADO-RS)")
async def series_metadata(
    study_instance_uid: str,
    series_instance_uid: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
) -> JSONResponse:
    target = Target(study_instance_uid, series_instance_uid)
    return await _metadata(target, request, principal, factory, archive)


@router.get(INSTANCE + "/metadata", summary="Retrieve an instance's metadata (WADO-RS)")
async def instance_metadata(
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
) -> JSONResponse:
    target = Target(study_instance_uid, series_instance_uid, sop_instance_uid)
    return await _metadata(target, request, principal, factory, archive)


async def _metadata(
    target: Target,
    request: Request,
    principal: Principal,
    factory: sessionmaker[Session],
    archive: Archive,
) -> JSONResponse:
    """Return the application/dicom+json array of the target's instance metadata.

    The metadata is in the database: on SQLite the event loop looks it up and, for at most
    ``LOOP_MAX_METADATA`` instances, answers itself (see ``loop_database``).
    """
    _check_json_accept(parse_accept(request))
    located = _find_on_loop(request, archive, target, with_metadata=True)
    if located is None:
        return await run_in_threadpool(
            _metadata_in_thread, target, request, principal, factory, archive
        )
    if len(located) > LOOP_MAX_METADATA:
        return await run_in_threadpool(_metadata_response, target, located, request, principal)
    await _commit(principal, request, "dicom.retrieve.metadata", target, len(located))
    return JSONResponse(retrieve.metadata(located), media_type=DICOM_JSON)


def _metadata_in_thread(
    target: Target,
    request: Request,
    principal: Principal,
    factory: sessionmaker[Session],
    archive: Archive,
) -> JSONResponse:
    located = _find(factory, archive, target, with_metadata=True)
    return _metadata_response(target, located, request, principal)


def _metadata_response(
    target: Target, located: list[retrieve.Located], request: Request, principal: Principal
) -> JSONResponse:
    _record(principal, request, "dicom.retrieve.metadata", target, len(located))
    return JSONResponse(retrieve.metadata(located), media_type=DICOM_JSON)


# --- rendered --------------------------------------------------------------------------------


@router.get(INSTANCE + "/rendered", summary="Retrieve an instance as an image (WADO-RS)")
def rendered_instance(
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
    window: str | None = None,
    viewport: str | None = None,
    quality: str | None = None,
) -> Response:
    """Render the first frame (multi-frame instances: ask for other frames by number)."""
    target = Target(study_instance_uid, series_instance_uid, sop_instance_uid)
    options = _render_options(request, window, viewport, quality)
    return _rendered(target, "1", options, request, principal, factory, archive)


@router.get(INSTANCE + "/frames/{frame_list}/rendered", summary="Retrieve a frame as an image")
def rendered_frame(
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    frame_list: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
    window: str | None = None,
    viewport: str | None = None,
    quality: str | None = None,
) -> Response:
    target = Target(study_instance_uid, series_instance_uid, sop_instance_uid)
    options = _render_options(request, window, viewport, quality)
    return _rendered(target, frame_list, options, request, principal, factory, archive)


def _render_options(
    request: Request, window: str | None, viewport: str | None, quality: str | None
) -> render.RenderOptions:
    """Return the render options of the request; BadRequest for a malformed parameter."""
    return render.RenderOptions(
        media_type=rendered_format(parse_accept(request)),
        window=None if window is None else render.parse_window(window),
        viewport=None if viewport is None else render.parse_viewport(viewport),
        quality=render.DEFAULT_JPEG_QUALITY if quality is None else render.parse_quality(quality),
    )


def _rendered(
    target: Target,
    frame_list: str,
    options: render.RenderOptions,
    request: Request,
    principal: Principal,
    factory: sessionmaker[Session],
    archive: Archive,
) -> Response:
    """Return one frame of the target instance rendered as PNG or JPEG."""
    [item] = _find(factory, archive, target)
    numbers = retrieve.parse_frame_list(frame_list, item.instance.number_of_frames)
    if len(numbers) != 1:
        raise BadRequest("a rendered image shows one frame: ask for one frame number")
    image = render.render(retrieve.read_dataset(item), frame_index=numbers[0] - 1, options=options)
    _record(principal, request, "dicom.retrieve.rendered", target, 1)
    return Response(image, media_type=options.media_type.value)


# --- frames ----------------------------------------------------------------------------------


@router.get(INSTANCE + "/frames/{frame_list}", summary="Retrieve frames' pixel data (WADO-RS)")
def retrieve_frames(
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    frame_list: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    archive: ArchiveDep,
) -> StreamingResponse:
    """Return frames decoded (application/octet-stream) or as their stored bitstream."""
    target = Target(study_instance_uid, series_instance_uid, sop_instance_uid)
    accepted = frame_media_types(parse_accept(request))
    [item] = _find(factory, archive, target)
    numbers = retrieve.parse_frame_list(frame_list, item.instance.number_of_frames)
    encoding = retrieve.choose_frame_encoding(item.instance.transfer_syntax_uid, accepted)
    payloads = retrieve.frame_payloads(retrieve.read_dataset(item), numbers, encoding)
    _record(principal, request, "dicom.retrieve.frames", target, 1)
    boundary = new_boundary()
    return StreamingResponse(
        iter_multipart_bytes([(p, encoding.content_type) for p in payloads], boundary),
        media_type=f'multipart/related; type="{encoding.media_type}"; boundary={boundary}',
    )
