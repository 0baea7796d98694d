"""A series: images from one acquisition, with the equipment that made them."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.orm.base import Base, CreatedAt, UUIDKey

if TYPE_CHECKING:
    from service.orm.instance import Instance
    from service.orm.study import Study


class Series(UUIDKey, CreatedAt, Base):
    __tablename__ = "series"

    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(default=None)
    series_description: Mapped[str] = mapped_column(String(64), default="")
    body_part_examined: Mapped[str] = mapped_column(String(16), default="", index=True)
    manufacturer: Mapped[str] = mapped_column(String(64), default="", index=True)
    manufacturer_model_name: Mapped[str] = mapped_column(String(64), default="", index=True)
    institution_name: Mapped[str] = mapped_column(String(64), default="", index=True)
    station_name: Mapped[str] = mapped_column(String(16), default="", index=True)

    study: Mapped[Study] = relationship(back_populates="series", lazy="raise")
    instances: Mapped[list[Instance]] = relationship(back_populates="series", lazy="raise")
