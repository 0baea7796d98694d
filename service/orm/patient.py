"""A patient as the archive knows them: identified by PatientID (and its issuer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Index, String, UniqueConstraint, func, literal_column
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.orm.base import Base, CreatedAt, UUIDKey

if TYPE_CHECKING:
    from service.orm.study import Study


class Patient(UUIDKey, CreatedAt, Base):
    __tablename__ = "patients"
    __table_args__ = (
        UniqueConstraint("patient_id", "issuer_of_patient_id"),
        # QIDO matches names ignoring case: lower(name) = or LIKE 'prefix%'. text_pattern_ops
        # lets PostgreSQL use the index for LIKE whatever the database's collation.
        Index(
            "ix_patients_patient_name_lower",
            func.lower(literal_column("patient_name")).label("patient_name_lower"),
            postgresql_ops={"patient_name_lower": "text_pattern_ops"},
        ),
    )

    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="", index=True)
    patient_sex: Mapped[str] = mapped_column(String(16), default="", index=True)
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")

    studies: Mapped[list[Study]] = relationship(back_populates="patient", lazy="raise")
