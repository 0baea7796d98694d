"""API tokens for machines; only a SHA-256 of the secret is stored."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.auth.roles import Role
from service.orm.base import Base, CreatedAt, UUIDKey
from service.orm.user import RoleColumn

if TYPE_CHECKING:
    from service.orm.user import User


class ApiToken(UUIDKey, CreatedAt, Base):
    __tablename__ = "api_tokens"

    user_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[Role] = mapped_column(RoleColumn)
    # The first characters of the token, shown in listings so a token can be recognised.
    prefix: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship(back_populates="tokens", lazy="raise")
