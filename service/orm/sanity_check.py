"""A model release's explanation sanity check (cascading randomisation), by weights sha256."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from service.orm.base import Base, CreatedAt, UUIDKey


class SanityCheck(UUIDKey, CreatedAt, Base):
    __tablename__ = "sanity_checks"

    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    # The weights the check ran on: a new release is a new sha256 and needs its own check.
    model_sha256: Mapped[str] = mapped_column(String(64), index=True)
    passed: Mapped[bool]
    images: Mapped[int]
    requested_by: Mapped[str] = mapped_column(String(64), default="")
    # Every step's similarities, the rule and the verdict (service.audit.sanity).
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
