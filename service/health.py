"""Liveness and readiness: the only routes that need no role."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from service.deps import ArchiveDep, SessionFactoryDep
from service.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session_factory: SessionFactoryDep, archive: ArchiveDep) -> dict[str, str]:
    """The database answers and the archive folder is writable."""
    try:
        with session_factory() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable("database is not reachable") from exc
    if not archive.incoming.is_dir():
        raise ServiceUnavailable("archive folder is missing")
    return {"status": "ready"}
