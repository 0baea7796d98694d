"""FastAPI dependencies shared by every router: settings, database session, archive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from service.db import session_scope
from service.dicom.archive import Archive
from service.settings import Settings


# The lookups below are `async def` on purpose: FastAPI runs plain `def` dependencies in its
# thread pool, and a thread hop costs more than these attribute reads.
async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session_factory_dep(request: Request) -> sessionmaker[Session]:
    return session_factory_of(request)


async def get_archive(request: Request) -> Archive:
    return request.app.state.archive  # type: ignore[no-any-return]


def session_factory_of(request: Request) -> sessionmaker[Session]:
    """Return the app's session factory (for code outside dependency injection)."""
    return request.app.state.session_factory  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """Yield the request's session; commit when the endpoint returns, roll back if it raises.

    Scope "function": the commit happens before the response is sent, so a client never
    hears "done" about something that is not yet durable. Every such request writes at least
    its access-log row, hence a writing session (see ``session_scope``).
    """
    with session_scope(session_factory_of(request)) as session:
        yield session


def client_addr(request: Request) -> str:
    """Return the peer address of a request (for the access log)."""
    return request.client.host if request.client else ""


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "")


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory_dep)]
ArchiveDep = Annotated[Archive, Depends(get_archive)]
