"""Users and API tokens: create, authenticate, revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.auth import repository
from service.auth.repository import TokenHolder
from service.auth.roles import Role
from service.auth.secrets import hash_password, new_token, token_sha256
from service.errors import BadRequest, Conflict, NotAuthenticated, NotFound
from service.orm import ApiToken, User
from service.orm.base import utcnow


@dataclass(frozen=True)
class Principal:
    """Who is making a request: a user, through a token or a login session."""

    user_pk: UUID | None  # None for the local operator of the CLI
    username: str
    role: Role
    token_pk: UUID | None = None


MIN_PASSWORD_CHARS = 12


def create_user(
    *,
    session: Session,
    username: str,
    role: Role,
    password: str | None = None,
    display_name: str = "",
) -> User:
    """Create a user; a password is only needed for people who log in to the pages."""
    username = username.strip()
    if not username or len(username) > 64:
        raise BadRequest("username must be 1 to 64 characters")
    if repository.get_user_by_username(session, username) is not None:
        raise Conflict(f"user {username!r} already exists")
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        raise BadRequest(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    user = User(
        username=username,
        role=role,
        display_name=display_name,
        password_hash=hash_password(password) if password is not None else None,
    )
    session.add(user)
    session.flush()
    return user


def set_user_active(*, session: Session, username: str, active: bool) -> tuple[User, int]:
    """Enable or disable a user; return it and how many of its page logins were ended.

    A disabled user's password and API tokens stop working at their next request (each
    checks the account), and its page logins are ended too, so enabling it again brings no
    old login back.
    """
    user = _user_named(session, username)
    user.is_active = active
    ended = 0 if active else repository.end_web_sessions(session, user.id, utcnow())
    return user, ended


def set_password(*, session: Session, username: str, password: str) -> int:
    """Give a user a new page password and end its page logins; return how many ended."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise BadRequest(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    user = _user_named(session, username)
    user.password_hash = hash_password(password)
    return repository.end_web_sessions(session, user.id, utcnow())


def _user_named(session: Session, username: str) -> User:
    user = repository.get_user_by_username(session, username.strip())
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def create_token(
    *,
    session: Session,
    role: Role,
    username: str | None = None,
    name: str = "",
    expires_in: timedelta | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token and return it with its secret (shown once, never stored).

    Without a username the token belongs to a service account named after its role
    (``svc-integration``), created on first use.
    """
    if username is None:
        username = f"svc-{role.value}"
        user = repository.get_user_by_username(session, username)
        if user is None:
            user = create_user(session=session, username=username, role=role)
    else:
        found = repository.get_user_by_username(session, username)
        if found is None:
            raise NotFound(f"no user {username!r}")
        user = found
    if user.role is not role and user.role is not Role.ADMIN:
        raise BadRequest(
            f"user {username!r} has role {user.role.value}; a {role.value} token needs a "
            f"{role.value} or admin user"
        )
    made = new_token()
    token = ApiToken(
        user_pk=user.id,
        name=name,
        role=role,
        prefix=made.prefix,
        token_sha256=made.sha256,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(token)
    session.flush()
    return token, made.secret


def authenticate_token(
    *, connection: Connection, secret: str, now: datetime | None = None
) -> Principal:
    """Return the principal a bearer token stands for; raise NotAuthenticated otherwise."""
    holder = repository.get_token_holder(connection, token_sha256(secret))
    return principal_of_holder(holder, now=now)


def principal_of_holder(holder: TokenHolder | None, *, now: datetime | None = None) -> Principal:
    """Return the principal of a looked-up token (None: not found); raise NotAuthenticated
    for one that is unknown, revoked, expired or whose user is deactivated."""
    if holder is None:
        raise NotAuthenticated("unknown API token")
    now = now or utcnow()
    if holder.revoked_at is not None:
        raise NotAuthenticated("this API token was revoked")
    if holder.expires_at is not None and holder.expires_at <= now:
        raise NotAuthenticated("this API token has expired")
    if not holder.user_is_active:
        raise NotAuthenticated("the user of this API token is deactivated")
    return Principal(
        user_pk=holder.user_pk,
        username=holder.username,
        role=holder.role,
        token_pk=holder.token_pk,
    )


def revoke_token(*, session: Session, prefix: str) -> ApiToken:
    """Revoke a token by the prefix shown when it was made; return it."""
    token = repository.get_token_by_prefix(session, prefix)
    if token is None:
        raise NotFound(f"no token with prefix {prefix!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token
