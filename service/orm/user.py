"""People and service accounts; a role decides what they reach."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.auth.roles import Role
from service.orm.base import Base, CreatedAt, UUIDKey

if TYPE_CHECKING:
    from service.orm.api_token import ApiToken

RoleColumn = Enum(
    Role,
    native_enum=False,
    create_constraint=True,
    length=16,
    values_callable=lambda roles: [r.value for r in roles],
    name="role",
)


class User(UUIDKey, CreatedAt, Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[Role] = mapped_column(RoleColumn)
    # argon2 hash; None for service accounts that only use API tokens.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    is_active: Mapped[bool] = mapped_column(default=True)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", lazy="raise")
