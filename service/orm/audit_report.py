"""A cohort bias report: who asked, for which analyses, how far it got; files on disk."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.orm.base import Base, CreatedAt, UUIDKey


class ReportStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class AuditReport(UUIDKey, CreatedAt, Base):
    __tablename__ = "audit_reports"

    requested_by: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    # The filters as asked (dates, model, site, whether identifiers are included).
    filters: Mapped[dict[str, Any]] = mapped_column(JSON)
    identified: Mapped[bool] = mapped_column(default=False)
    status: Mapped[ReportStatus] = mapped_column(
        Enum(
            ReportStatus,
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda statuses: [s.value for s in statuses],
            name="audit_report_status",
        ),
        default=ReportStatus.RUNNING,
    )
    # Steps done of all steps while it runs (long reports show their progress).
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int] = mapped_column(default=0)
    analyses: Mapped[int] = mapped_column(default=0)
    highlighted: Mapped[int] = mapped_column(default=0)
    # The report's headline numbers (the files under var/reports/<id>/ hold the rest).
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
