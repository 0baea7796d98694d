"""Rendering the review pages: the Jinja2 templates, their filters, and static file URLs."""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from service.orm.base import as_utc

BASE = "/review"  # where the pages are mounted
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"

templates = Jinja2Templates(directory=WEB_DIR / "templates")


@cache
def _file_hash(name: str, mtime_ns: int) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """Return a static file's URL with its content hash, so browsers may cache it for good."""
    path = STATIC_DIR / name
    return f"{BASE}/static/{name}?v={_file_hash(name, path.stat().st_mtime_ns)}"


def person_name(value: str) -> str:
    """Return a DICOM person name (``Doe^Jane``) as people write it (``Doe, Jane``)."""
    family, _, rest = (value or "").partition("^")
    given = " ".join(p for p in rest.split("^") if p)
    return f"{family}, {given}" if family and given else (family or given or "(no name)")


def dicom_date(value: str) -> str:
    """Return a DICOM date (YYYYMMDD) as YYYY-MM-DD, or the value as it is."""
    if len(value or "") == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "—"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def moment(value: datetime | None) -> str:
    """Return a time as ``YYYY-MM-DD HH:MM:SS UTC`` (the server's clock, in UTC)."""
    if value is None:
        return "—"
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    seconds = ms / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


templates.env.globals.update(static_url=static_url, BASE=BASE)
templates.env.filters.update(
    person_name=person_name,
    dicom_date=dicom_date,
    percent=percent,
    moment=moment,
    duration=duration,
)


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Return a page; pages hold patient data, so no cache keeps them."""
    login = getattr(request.state, "page_login", None)
    response = templates.TemplateResponse(
        request, template, {"login": login, **context}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    return response
