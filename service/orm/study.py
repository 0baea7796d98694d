"""A study: one imaging exam, the unit a radiology viewer sends and a clinician reviews."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, func, literal_column
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.orm.base import Base, CreatedAt, UUIDKey, utcnow

if TYPE_CHECKING:
    from service.orm.patient import Patient
    from service.orm.series import Series


class Study(UUIDKey, CreatedAt, Base):
    __tablename__ = "studies"
    __table_args__ = (
        # Names match ignoring case in QIDO (see Patient's index on lower(patient_name)).
        Index(
            "ix_studies_referring_physician_name_lower",
            func.lower(literal_column("referring_physician_name")).label("physician_lower"),
            postgresql_ops={"physician_lower": "text_pattern_ops"},
        ),
    )

    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(16), default="", index=True)
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    study_description: Mapped[str] = mapped_column(String(64), default="", index=True)
    referring_physician_name: Mapped[str] = mapped_column(String(324), default="", index=True)
    patient_age: Mapped[str] = mapped_column(String(4), default="", index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="studies", lazy="raise")
    series: Mapped[list[Series]] = relationship(back_populates="study", lazy="raise")
