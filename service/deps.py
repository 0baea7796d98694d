"""FastAPI dependencies shared by every router: settings, database session, archive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from service.dicom.archive import Archive
from service.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.session_factory  # type: ignore[no-any-return]


def get_archive(request: Request) -> Archive:
    return request.app.state.archive  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """Yield the request's session; commit when the endpoint returns, roll back if it raises.

    Scope "function": the commit happens before the response is sent, so a client never
    hears "done" about something that is not yet durable.
    """
    session = get_session_factory(request)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def client_addr(request: Request) -> str:
    """Return the peer address of a request (for the access log)."""
    return request.client.host if request.client else ""


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "")


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
ArchiveDep = Annotated[Archive, Depends(get_archive)]
