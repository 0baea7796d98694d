"""A patient as the archive knows them: identified by PatientID (and its issuer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.orm.base import Base, CreatedAt, UUIDKey

if TYPE_CHECKING:
    from service.orm.study import Study


class Patient(UUIDKey, CreatedAt, Base):
    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer_of_patient_id"),)

    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="", index=True)
    patient_sex: Mapped[str] = mapped_column(String(16), default="", index=True)
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")

    studies: Mapped[list[Study]] = relationship(back_populates="patient", lazy="raise")
