"""The auditor's page (part of the review pages app, so ``/review/audit``): the cohort
reports with their progress and files, a form for a new one, and the model sanity checks.

Reports are built inside the form's request (a minute at most for thousands of analyses);
other tabs see its progress in the list meanwhile (the page refreshes while one runs).
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from service.audit import repository
from service.audit import service as audit_service
from service.audit.report_cases import ReportFilters
from service.audit.report_files import GALLERY_DIR
from service.auth.access_log import record_request_access
from service.auth.page_dependencies import require_page
from service.auth.roles import Permission, Role
from service.auth.web_sessions import PageLogin
from service.deps import SessionDep, SessionFactoryDep, SettingsDep, client_addr, request_id
from service.errors import BadRequest, NotFound
from service.orm import ReportStatus
from service.review.rendering import BASE, render
from service.text_values import Text

router = APIRouter()
PageAuditor = Annotated[PageLogin, Depends(require_page(Permission.AUDIT_REPORTS))]
PageAuditForm = Annotated[PageLogin, Depends(require_page(Permission.AUDIT_REPORTS, post=True))]
FormField = Annotated[Text, Form(max_length=200)]
_FILES = {
    "report.html": "text/html; charset=utf-8",
    "report.css": "text/css; charset=utf-8",
    "report.json": "application/json",
    "report.csv": "text/csv; charset=utf-8",
}
_GALLERY_NAME = re.compile(r"^case-[0-9a-f]{10}\.png$")


@router.get("/audit", name="audit")
def audit_page(
    request: Request, login: PageAuditor, session: SessionDep, error: str = ""
) -> HTMLResponse:
    """The reports (newest first), the new-report form and the stored sanity checks."""
    reports = repository.list_reports(session)
    checks = repository.list_sanity_checks(session)
    return render(
        request,
        "audit.html",
        {
            "reports": reports,
            "checks": checks,
            "running": any(r.status is ReportStatus.RUNNING for r in reports),
            "may_identify": login.principal.role is Role.ADMIN,
            "models": repository.model_names(session),
            "error": error,
        },
    )


@router.post("/audit/reports")
def create_report_page(
    request: Request,
    login: PageAuditForm,
    settings: SettingsDep,
    session_factory: SessionFactoryDep,
    date_from: FormField = "",
    date_to: FormField = "",
    model: FormField = "",
    site: FormField = "",
    include_identifiers: FormField = "",
) -> Response:
    """Build a report from the form and go back to the list (bad input: the list with the
    reason)."""
    try:
        filters = ReportFilters(
            date_from=_day(date_from, "from"),
            date_to=_day(date_to, "to"),
            model=model.strip() or None,
            site=site.strip() or None,
            include_identifiers=bool(include_identifiers),
        )
        audit_service.create_report(
            session_factory=session_factory,
            settings=settings,
            filters=filters,
            caller=audit_service.Caller(login.principal, client_addr(request), request_id(request)),
        )
    except (BadRequest, NotFound) as exc:
        return RedirectResponse(request.url_for("audit").include_query_params(error=exc.message),
                                status_code=303)  # fmt: skip
    return RedirectResponse(f"{BASE}/audit", status_code=303)


@router.get("/audit/reports/{report_id}/{name}")
def report_file(
    report_id: uuid.UUID,
    name: str,
    request: Request,
    login: PageAuditor,
    session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:
    """One of a report's files: the page, its stylesheet, the JSON, the CSV."""
    if name not in _FILES:
        raise NotFound(f"a report has no file {name!r}")
    return _serve(request, login, session, settings, report_id, name, _FILES[name])


@router.get("/audit/reports/{report_id}/gallery/{name}")
def report_gallery_image(
    report_id: uuid.UUID,
    name: str,
    request: Request,
    login: PageAuditor,
    session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:
    """One of a report's gallery images."""
    if not _GALLERY_NAME.match(name):
        raise NotFound(f"no gallery image {name!r}")
    return _serve(
        request, login, session, settings, report_id, f"{GALLERY_DIR}/{name}", "image/png"
    )


def _serve(
    request: Request,
    login: PageLogin,
    session: SessionDep,
    settings: SettingsDep,
    report_id: uuid.UUID,
    name: str,
    media_type: str,
) -> FileResponse:
    row = audit_service.readable(
        repository.get_report(session, report_id), report_id, login.principal.role
    )
    path = audit_service.report_folder(settings, row.id) / name
    if row.status is not ReportStatus.DONE or not path.is_file():
        raise NotFound(f"report {report_id} has no {name} ({row.status.value})")
    if name != "report.css":
        record_request_access(
            request,
            login.principal,
            "audit.report.read",
            session=session,
            result_count=row.analyses,
        )
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-store"})


def _day(text: str, field: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"{field}: {text.strip()!r} is not a date (YYYY-MM-DD)") from None
