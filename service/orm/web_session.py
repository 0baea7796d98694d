"""A person's login to the web pages; the cookie holds a secret, the table only its hash."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.orm.base import Base, CreatedAt, UUIDKey


class WebSession(UUIDKey, CreatedAt, Base):
    __tablename__ = "web_sessions"

    user_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    session_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # Echoed in every form of the session and compared on every POST. Not a credential on
    # its own: it is useless without the session cookie, which is never stored.
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    client_addr: Mapped[str] = mapped_column(String(64), default="")
