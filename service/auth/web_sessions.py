"""Logins to the web pages: a password once, then a session cookie with its CSRF token.

The cookie holds a random secret; the database keeps its SHA-256 (like API tokens), the CSRF
token every form of the session echoes, the expiry and whether the person logged out.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import ClassVar

from sqlalchemy.orm import Session

from service.auth import repository as users
from service.auth.roles import Permission, allows
from service.auth.secrets import hash_password, token_sha256, verify_password
from service.auth.service import Principal
from service.errors import Forbidden, NotAuthenticated
from service.orm import WebSession
from service.orm.base import utcnow

WRONG_LOGIN = "wrong username or password"


class LoginRequired(NotAuthenticated):
    """A page needs a login: none, or one that expired or ended (``code`` says which; the
    login page shows the message for a code, never text from a URL)."""

    MESSAGES: ClassVar[dict[str, str]] = {
        "login": "Please log in.",
        "expired": "Your session expired; please log in again.",
        "logged-out": "You are logged out.",
        "not-allowed": "This account may no longer log in to the pages.",
    }

    def __init__(self, code: str) -> None:
        super().__init__(self.MESSAGES[code])
        self.code = code


@dataclass(frozen=True)
class PageLogin:
    """Who is behind a page request, and the CSRF token their forms must carry."""

    principal: Principal
    session_pk: uuid.UUID
    csrf_token: str
    expires_at: datetime


def login(
    *,
    session: Session,
    username: str,
    password: str,
    lifetime: timedelta,
    client_addr: str = "",
    now: datetime | None = None,
) -> tuple[PageLogin, str]:
    """Check a password and open a login session; return it with the cookie's secret."""
    user = users.get_user_by_username(session, username.strip())
    if user is None or user.password_hash is None:
        verify_password(_decoy_hash(), password)  # the same time as for a real account
        raise NotAuthenticated(WRONG_LOGIN)
    if not verify_password(user.password_hash, password):
        raise NotAuthenticated(WRONG_LOGIN)
    if not user.is_active:
        raise NotAuthenticated("this account is deactivated")
    if not allows(user.role, Permission.PAGES):
        raise Forbidden(
            f"{user.role.value} accounts cannot log in to the pages: they use API tokens"
        )
    secret = secrets.token_urlsafe(32)
    row = WebSession(
        user_pk=user.id,
        session_sha256=token_sha256(secret),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=(now or utcnow()) + lifetime,
        client_addr=client_addr[:64],
    )
    session.add(row)
    session.flush()
    principal = Principal(user_pk=user.id, username=user.username, role=user.role)
    return PageLogin(principal, row.id, row.csrf_token, row.expires_at), secret


def authenticate(*, session: Session, secret: str, now: datetime | None = None) -> PageLogin:
    """Return the login a session cookie stands for; raise LoginRequired otherwise."""
    found = users.get_web_session_with_user(session, token_sha256(secret))
    if found is None:
        raise LoginRequired("login")
    row, user = found
    if row.revoked_at is not None:
        raise LoginRequired("logged-out")
    if row.expires_at <= (now or utcnow()):
        raise LoginRequired("expired")
    if not user.is_active or not allows(user.role, Permission.PAGES):
        raise LoginRequired("not-allowed")
    return PageLogin(
        principal=Principal(user_pk=user.id, username=user.username, role=user.role),
        session_pk=row.id,
        csrf_token=row.csrf_token,
        expires_at=row.expires_at,
    )


def logout(*, session: Session, session_pk: uuid.UUID) -> None:
    """End a login session (kept, marked revoked: the cookie stops working at once)."""
    row = session.get(WebSession, session_pk)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


@cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
