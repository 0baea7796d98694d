"""Queries on users, tokens and the access log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.orm import AccessLogEntry, ApiToken, User, WebSession


def get_user_by_username(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).one_or_none()


def get_token_with_user(session: Session, sha256: str) -> tuple[ApiToken, User] | None:
    """Return a token and its user by the token's SHA-256, if such a token exists."""
    row = session.execute(
        select(ApiToken, User)
        .join(User, ApiToken.user_pk == User.id)
        .where(ApiToken.token_sha256 == sha256)
    ).one_or_none()
    return None if row is None else (row[0], row[1])


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
