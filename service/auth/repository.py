"""Queries on users, tokens and the access log."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, PoolProxiedConnection, bindparam, select, update
from sqlalchemy.orm import Session

from service.auth.roles import Role
from service.orm import AccessLogEntry, ApiToken, User, WebSession
from service.sqlite_compiled import CompiledRowQuery


def get_user_by_username(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).one_or_none()


@dataclass(frozen=True)
class TokenHolder:
    """What authenticating a request needs of an API token and its user."""

    token_pk: uuid.UUID
    role: Role
    expires_at: datetime | None
    revoked_at: datetime | None
    user_pk: uuid.UUID
    username: str
    user_is_active: bool


# Columns only, and built once: every API request runs this lookup, and loading the token and
# user as ORM objects cost four times as much.
TOKEN_HOLDER = (
    select(
        ApiToken.id,
        ApiToken.role,
        ApiToken.expires_at,
        ApiToken.revoked_at,
        User.id,
        User.username,
        User.is_active,
    )
    .join(User, ApiToken.user_pk == User.id)
    .where(ApiToken.token_sha256 == bindparam("sha256"))
)


def get_token_holder(connection: Connection, sha256: str) -> TokenHolder | None:
    """Return a token and its user by the token's SHA-256, if such a token exists."""
    row = connection.execute(TOKEN_HOLDER, {"sha256": sha256}).one_or_none()
    return None if row is None else TokenHolder(*row)


class TokenHolderQuery:
    """The token-holder lookup for an SQLite engine, run on its driver (see sqlite_compiled).

    Every request makes this lookup, on the event loop itself. Each thread that looks up
    keeps a connection of its own (in practice the loop's one): taking one from the pool and
    giving it back cost more than the lookup. ``close`` gives them back.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._query = CompiledRowQuery(engine.dialect, TOKEN_HOLDER)
        self._local = threading.local()
        self._held: list[PoolProxiedConnection] = []
        self._held_lock = threading.Lock()

    def get(self, sha256: str) -> TokenHolder | None:
        """Return a token and its user by the token's SHA-256, if such a token exists."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            pooled = self._engine.raw_connection()
            with self._held_lock:
                self._held.append(pooled)
            connection = self._local.connection = pooled.dbapi_connection
        row = self._query.one_or_none(connection, {"sha256": sha256})
        return None if row is None else TokenHolder(*row)

    def close(self) -> None:
        """Give the threads' connections back to the engine's pool."""
        with self._held_lock:
            held, self._held = self._held, []
            self._local = threading.local()
        for pooled in held:
            pooled.close()


def list_tokens(session: Session) -> list[tuple[ApiToken, User]]:
    rows = session.execute(
        select(ApiToken, User).join(User, ApiToken.user_pk == User.id).order_by(ApiToken.created_at)
    ).all()
    return [(token, user) for token, user in rows]


def get_token_by_prefix(session: Session, prefix: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.prefix == prefix)).one_or_none()


def list_access_log(
    session: Session,
    *,
    since: datetime | None,
    study_instance_uid: str | None,
    username: str | None,
    limit: int,
    offset: int,
) -> list[AccessLogEntry]:
    query = select(AccessLogEntry).order_by(AccessLogEntry.at.desc())
    if since is not None:
        query = query.where(AccessLogEntry.at >= since)
    if study_instance_uid:
        query = query.where(AccessLogEntry.study_instance_uid == study_instance_uid)
    if username:
        query = query.where(AccessLogEntry.username == username)
    return list(session.scalars(query.limit(limit).offset(offset)))


def get_web_session_with_user(session: Session, sha256: str) -> tuple[WebSession, User] | None:
    """Return a login session and its user by the SHA-256 of the cookie's secret."""
    row = session.execute(
        select(WebSession, User)
        .join(User, WebSession.user_pk == User.id)
        .where(WebSession.session_sha256 == sha256)
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def end_web_sessions(session: Session, user_pk: uuid.UUID, now: datetime) -> int:
    """Mark a user's open page logins revoked (their cookies stop working); return how many."""
    result = session.execute(
        update(WebSession)
        .where(WebSession.user_pk == user_pk, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))
