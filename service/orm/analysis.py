"""One analysis of one image by one model version with a set of explanation methods."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.orm.base import Base, CreatedAt, UUIDKey


class AnalysisStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Analysis(UUIDKey, CreatedAt, Base):
    __tablename__ = "analyses"
    # Idempotent per (instance, model version, methods): asking again returns this row.
    __table_args__ = (UniqueConstraint("instance_pk", "model_sha256", "methods"),)

    instance_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("instances.id"), index=True)
    study_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    # Sorted, comma-separated explanation methods, e.g. "gradcam,occlusion".
    methods: Mapped[str] = mapped_column(String(128))
    status: Mapped[AnalysisStatus] = mapped_column(
        Enum(
            AnalysisStatus,
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda statuses: [s.value for s in statuses],
            name="analysis_status",
        ),
        default=AnalysisStatus.QUEUED,
        index=True,
    )
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    requested_by: Mapped[str] = mapped_column(String(64), default="")
    trigger: Mapped[str] = mapped_column(String(16), default="request")
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Results, filled when done: findings, regions, timings, outputs, bias audit fields.
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
