"""A stored SOP instance: index attributes, where its file lies, and its DICOM JSON metadata."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.orm.base import Base, CreatedAt, UUIDKey

if TYPE_CHECKING:
    from service.orm.series import Series


class Instance(UUIDKey, CreatedAt, Base):
    __tablename__ = "instances"

    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("series.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64), index=True)
    instance_number: Mapped[int | None] = mapped_column(default=None)
    rows: Mapped[int | None] = mapped_column(default=None, index=True)
    columns: Mapped[int | None] = mapped_column(default=None, index=True)
    number_of_frames: Mapped[int] = mapped_column(default=1, index=True)
    bits_allocated: Mapped[int | None] = mapped_column(default=None)
    photometric_interpretation: Mapped[str] = mapped_column(String(16), default="")
    view_position: Mapped[str] = mapped_column(String(16), default="", index=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64), index=True)
    # Relative to the archive folder, so the archive can move.
    file_path: Mapped[str] = mapped_column(String(255))
    file_size: Mapped[int] = mapped_column(BigInteger, index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # DICOM JSON (PS3.18 F.2) without bulk data: answers /metadata and includefield.
    dicom_json: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)

    series: Mapped[Series] = relationship(back_populates="instances", lazy="raise")
