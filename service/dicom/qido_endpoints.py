"""QIDO-RS search routes (PS3.18 10.6) under /dicomweb: HTTP only, the search is in qido.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.auth.access_log import commit_request_access, record_request_access
from service.auth.dependencies import DicomReader
from service.auth.service import Principal
from service.deps import SessionFactoryDep, SettingsDep
from service.dicom import qido
from service.dicom.qido_params import Level, SearchSpec, parse_search
from service.dicom.uids import is_valid_uid
from service.errors import BadRequest, NotAcceptable
from service.log_config import get_logger
from service.loop_database import LoopDatabase, LoopTooLong
from service.request_urls import request_base_url
from service.settings import Settings

log = get_logger(__name__)
router = APIRouter(tags=["DICOMweb QIDO-RS"])

DICOM_JSON = "application/dicom+json"
_ACCEPTABLE = frozenset({DICOM_JSON, "application/json", "application/*", "*/*"})
# Searches answering at most this many results may run on the event loop (SQLite).
LOOP_MAX_RESULTS = 100
TRUNCATED_WARNING = (
    '299 {host}: "The number of results exceeded the maximum supported by the server. '
    'Additional results can be requested."'
)


@router.get("/studies", summary="Search for studies (QIDO-RS)")
async def search_studies(
    request: Request, principal: DicomReader, factory: SessionFactoryDep, settings: SettingsDep
) -> JSONResponse:
    return await _search(request, principal, factory, settings, Level.STUDY)


@router.get("/series", summary="Search for series in all studies (QIDO-RS)")
async def search_series(
    request: Request, principal: DicomReader, factory: SessionFactoryDep, settings: SettingsDep
) -> JSONResponse:
    return await _search(request, principal, factory, settings, Level.SERIES)


@router.get("/instances", summary="Search for instances in all studies (QIDO-RS)")
async def search_instances(
    request: Request, principal: DicomReader, factory: SessionFactoryDep, settings: SettingsDep
) -> JSONResponse:
    return await _search(request, principal, factory, settings, Level.INSTANCE)


@router.get("/studies/{study}/series", summary="Search for series in a study (QIDO-RS)")
async def search_study_series(
    study: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    settings: SettingsDep,
) -> JSONResponse:
    return await _search(request, principal, factory, settings, Level.SERIES, study)


@router.get("/studies/{study}/instances", summary="Search for instances in a study (QIDO-RS)")
async def search_study_instances(
    study: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    settings: SettingsDep,
) -> JSONResponse:
    return await _search(request, principal, factory, settings, Level.INSTANCE, study)


@router.get(
    "/studies/{study}/series/{series}/instances",
    summary="Search for instances in a series (QIDO-RS)",
)
async def search_series_instances(
    study: str,
    series: str,
    request: Request,
    principal: DicomReader,
    factory: SessionFactoryDep,
    settings: SettingsDep,
) -> JSONResponse:
    return await _search(request, principal, factory, settings, Level.INSTANCE, study, series)


async def _search(
    request: Request,
    principal: Principal,
    factory: sessionmaker[Session],
    settings: Settings,
    level: Level,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> JSONResponse:
    """Search and answer. On SQLite the event loop runs a search of at most
    ``LOOP_MAX_RESULTS`` results itself, within its time budget (see ``loop_database``);
    other searches, and one that runs past the budget, run in a worker thread."""
    if not accepts_dicom_json(request.headers.get("accept")):
        raise NotAcceptable(f"search results are {DICOM_JSON}; the Accept header excludes it")
    for name, uid in (("study", study_uid), ("series", series_uid)):
        if uid is not None and not is_valid_uid(uid):
            raise BadRequest(f"the {name} in the URL is not a valid UID")
    spec = parse_search(
        request.query_params.multi_items(),
        level=level,
        default_limit=settings.qido_default_limit,
        max_limit=settings.qido_max_limit,
    )
    search = _Search(spec, request_base_url(request, settings), study_uid, series_uid)
    loop_database: LoopDatabase | None = getattr(request.app.state, "loop_database", None)
    if loop_database is not None and spec.limit <= LOOP_MAX_RESULTS:
        try:
            with loop_database.bounded():
                found = search.run(loop_database.engine)
        except LoopTooLong:
            pass
        else:
            await commit_request_access(request, principal, "dicom.search", **search.logged(found))
            return _answer(found, search, request)
    return await run_in_threadpool(_search_in_thread, request, principal, factory, search)


@dataclass(frozen=True)
class _Search:
    """One search as the request asks it."""

    spec: SearchSpec
    base_url: str
    study_uid: str | None
    series_uid: str | None

    def run(self, engine: Engine) -> qido.SearchResult:
        return qido.search(
            engine=engine,
            spec=self.spec,
            base_url=self.base_url,
            study_uid=self.study_uid,
            series_uid=self.series_uid,
        )

    def logged(self, found: qido.SearchResult) -> dict[str, Any]:
        """The access-log row's fields of the search (beyond who, what, when, from where)."""
        return {
            "study_instance_uid": self.study_uid,
            "series_instance_uid": self.series_uid,
            "result_count": len(found.results),
        }


def _search_in_thread(
    request: Request,
    principal: Principal,
    factory: sessionmaker[Session],
    search: _Search,
) -> JSONResponse:
    # Searched read-only, logged in a short writing transaction: on SQLite a writing
    # transaction holds the one write lock, and searches should not queue behind stores.
    found = search.run(factory.kw["bind"])
    record_request_access(request, principal, "dicom.search", **search.logged(found))
    return _answer(found, search, request)


def _answer(found: qido.SearchResult, search: _Search, request: Request) -> JSONResponse:
    # Counts and the level only: the query's values may name a patient.
    log.info(
        "qido.searched",
        level=search.spec.level.label,
        result_count=len(found.results),
        truncated=found.truncated,
    )
    headers = {}
    if found.truncated:
        host = urlsplit(search.base_url).netloc or request.url.netloc
        headers["Warning"] = TRUNCATED_WARNING.format(host=host)
    return JSONResponse(found.results, media_type=DICOM_JSON, headers=headers)


def accepts_dicom_json(accept: str | None) -> bool:
    """Return whether an Accept header admits application/dicom+json (no header admits all)."""
    if accept is None or not accept.strip():
        return True
    for media_range in accept.split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        if media_type.lower() not in _ACCEPTABLE:
            continue
        quality = next((p.split("=", 1)[1] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            continue
    return False
