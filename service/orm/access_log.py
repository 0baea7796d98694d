"""Who read or wrote which patient data, when and from where; rows are never changed."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.orm.base import Base, UUIDKey, utcnow


class AccessLogEntry(UUIDKey, Base):
    __tablename__ = "access_log"

    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_pk: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    token_pk: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_tokens.id"))
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    # For searches: how many results were shown (no query values: they may name patients).
    result_count: Mapped[int | None] = mapped_column(default=None)
    status_code: Mapped[int] = mapped_column()
    client_addr: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
