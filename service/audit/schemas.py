"""What the audit API accepts and answers."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.audit.report_cases import ReportFilters
from service.orm import AuditReport, ReportStatus, SanityCheck
from service.text_values import Text


class ReportRequest(BaseModel):
    """Which analyses a report covers (every filter optional; none: every done analysis)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    date_from: date | None = Field(
        default=None, alias="from", description="First day analysed (UTC), YYYY-MM-DD"
    )
    date_to: date | None = Field(
        default=None, alias="to", description="Last day analysed (UTC), YYYY-MM-DD"
    )
    model: Text | None = Field(default=None, min_length=1, max_length=128)
    site: Text | None = Field(
        default=None, min_length=1, max_length=64, description="InstitutionName, exactly"
    )
    include_identifiers: bool = Field(
        default=False, description="Patient IDs, names and UIDs in the report (admins only)"
    )

    def filters(self) -> ReportFilters:
        return ReportFilters(
            date_from=self.date_from,
            date_to=self.date_to,
            model=self.model,
            site=self.site,
            include_identifiers=self.include_identifiers,
        )


class ReportLinks(BaseModel):
    self: str
    html: str
    csv: str


class ReportOut(BaseModel):
    """A report's row: who asked, for what, how far it got, its headline numbers, links."""

    id: uuid.UUID
    status: ReportStatus
    created_at: datetime
    finished_at: datetime | None
    requested_by: str
    role: str
    filters: dict[str, Any]
    identified: bool
    progress_done: int
    progress_total: int
    analyses: int
    highlighted: int
    summary: dict[str, Any] | None
    failure_reason: str | None
    links: ReportLinks

    @classmethod
    def of(cls, row: AuditReport, base: str) -> ReportOut:
        url = f"{base}/{row.id}"
        return cls(
            id=row.id,
            status=row.status,
            created_at=row.created_at,
            finished_at=row.finished_at,
            requested_by=row.requested_by,
            role=row.role,
            filters=row.filters,
            identified=row.identified,
            progress_done=row.progress_done,
            progress_total=row.progress_total,
            analyses=row.analyses,
            highlighted=row.highlighted,
            summary=row.summary,
            failure_reason=row.failure_reason,
            links=ReportLinks(self=url, html=f"{url}/report.html", csv=f"{url}/report.csv"),
        )


class SanityOut(BaseModel):
    """A stored sanity check of one model release (by its weights' sha256)."""

    id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str
    model_sha256: str
    passed: bool
    images: int
    requested_by: str
    result: dict[str, Any]

    @classmethod
    def of(cls, row: SanityCheck) -> SanityOut:
        return cls(
            id=row.id,
            created_at=row.created_at,
            model_name=row.model_name,
            model_version=row.model_version,
            model_sha256=row.model_sha256,
            passed=row.passed,
            images=row.images,
            requested_by=row.requested_by,
            result=row.result,
        )
