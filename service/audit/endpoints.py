"""The bias audit over HTTP: cohort reports (create, list, read their files) and the stored
model sanity checks. Auditors and admins only; identified reports are for admins only."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from service.audit import repository
from service.audit import service as audit_service
from service.audit.report_files import GALLERY_DIR
from service.audit.schemas import ReportOut, ReportRequest, SanityOut
from service.auth.access_log import record_request_access
from service.auth.dependencies import require
from service.auth.roles import Permission
from service.auth.service import Principal
from service.deps import SessionDep, SessionFactoryDep, SettingsDep, client_addr, request_id
from service.errors import NotFound
from service.orm import AuditReport, ReportStatus
from service.security_headers import SECURITY_HEADERS
from service.settings import Settings

router = APIRouter(prefix="/audit", tags=["audit"])
AuditReader = Annotated[Principal, Depends(require(Permission.AUDIT_REPORTS))]
REPORTS = "/api/v1/audit/reports"
ReportId = Annotated[uuid.UUID, Path(description="The report's id")]
_GALLERY_NAME = re.compile(r"^case-[0-9a-f]{10}\.png$")
_MEDIA = {
    "report.html": "text/html; charset=utf-8",
    "report.csv": "text/csv; charset=utf-8",
    "report.css": "text/css; charset=utf-8",
}


@router.post("/reports")
def create_report(
    request: Request,
    principal: AuditReader,
    settings: SettingsDep,
    session_factory: SessionFactoryDep,
    body: Annotated[ReportRequest | None, Body()] = None,
) -> ReportOut:
    """Build a cohort report over the done analyses the filters select and write its files
    (HTML with plots and a gallery, JSON, CSV). No match gives an empty report that says so."""
    row = audit_service.create_report(
        session_factory=session_factory,
        settings=settings,
        filters=(body or ReportRequest()).filters(),
        caller=audit_service.Caller(principal, client_addr(request), request_id(request)),
    )
    return ReportOut.of(row, REPORTS)


@router.get("/reports")
def list_reports(principal: AuditReader, session: SessionDep) -> list[ReportOut]:
    """Reports, newest first, with their status and progress while they run."""
    return [ReportOut.of(row, REPORTS) for row in repository.list_reports(session)]


@router.get("/reports/{report_id}")
def get_report(
    report_id: ReportId,
    request: Request,
    principal: AuditReader,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, object]:
    """A report's row and, once done, its whole JSON document under ``content``."""
    row = _readable(session, report_id, principal)
    content = None
    if row.status is ReportStatus.DONE:
        content = audit_service.read_report_json(settings, row)
        _log(session, request, principal, "audit.report.read", row.analyses)
    return {**ReportOut.of(row, REPORTS).model_dump(mode="json"), "content": content}


@router.get("/reports/{report_id}/report.html")
def report_html(
    report_id: ReportId, request: Request, principal: AuditReader, session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:  # fmt: skip
    """The report page (open it beside its ``report.css`` and ``gallery/`` files)."""
    return _file(session, request, principal, settings, report_id, "report.html")


@router.get("/reports/{report_id}/report.csv")
def report_csv(
    report_id: ReportId, request: Request, principal: AuditReader, session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:  # fmt: skip
    """The group table: one row per group of each attribute."""
    return _file(session, request, principal, settings, report_id, "report.csv")


@router.get("/reports/{report_id}/report.css")
def report_css(
    report_id: ReportId, request: Request, principal: AuditReader, session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:  # fmt: skip
    """The report page's stylesheet."""
    return _file(session, request, principal, settings, report_id, "report.css", log=False)


@router.get("/reports/{report_id}/gallery/{name}")
def report_gallery(
    report_id: ReportId, name: str, request: Request, principal: AuditReader,
    session: SessionDep, settings: SettingsDep,
) -> FileResponse:  # fmt: skip
    """One gallery image of a report (``case-<reference>.png``)."""
    if not _GALLERY_NAME.match(name):
        raise NotFound(f"no gallery image {name!r}")
    return _file(session, request, principal, settings, report_id, f"{GALLERY_DIR}/{name}")


@router.get("/sanity")
def list_sanity_checks(
    principal: AuditReader,
    session: SessionDep,
    sha256: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
) -> list[SanityOut]:
    """Stored model sanity checks (cascading randomisation), newest first; ``sha256``
    narrows them to one release's weights."""
    return [SanityOut.of(row) for row in repository.list_sanity_checks(session, sha256)]


def _readable(session: Session, report_id: uuid.UUID, principal: Principal) -> AuditReport:
    found = repository.get_report(session, report_id)
    return audit_service.readable(found, report_id, principal.role)


def _file(
    session: Session,
    request: Request,
    principal: Principal,
    settings: Settings,
    report_id: uuid.UUID,
    name: str,
    *,
    log: bool = True,
) -> FileResponse:
    row = _readable(session, report_id, principal)
    path = audit_service.report_folder(settings, row.id) / name
    if row.status is not ReportStatus.DONE or not path.is_file():
        raise NotFound(f"report {report_id} has no {name} ({row.status.value})")
    if log:
        _log(session, request, principal, "audit.report.read", row.analyses)
    media = _MEDIA.get(name, "image/png")
    # Reports hold patient-derived data: no cache keeps them. Opened in a browser, the page
    # gets the review pages' policy (it holds values that senders chose).
    headers = {"Cache-Control": "no-store", **SECURITY_HEADERS}
    return FileResponse(path, media_type=media, headers=headers)


def _log(session: Session, request: Request, principal: Principal, action: str, count: int) -> None:
    record_request_access(
        request,
        principal,
        action,
        session=session,
        result_count=count,
    )
