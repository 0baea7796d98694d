"""Who am I, and (for admins) the access log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from service.auth import repository
from service.auth.dependencies import AccessLogReader, AnyRole
from service.auth.roles import ROLE_PERMISSIONS
from service.auth.schemas import AccessLogRow, WhoAmI
from service.deps import SessionDep

router = APIRouter(tags=["auth"])


@router.get("/me", response_model=WhoAmI)
def whoami(principal: AnyRole) -> WhoAmI:
    """The caller's name, role and what the role allows."""
    return WhoAmI(
        username=principal.username,
        role=principal.role,
        permissions=sorted(ROLE_PERMISSIONS[principal.role]),
    )


# Past this the databases' 64-bit integers overflow; QIDO's offset stops at 18 digits too.
MAX_OFFSET = 10**18 - 1


@router.get("/access-log", response_model=list[AccessLogRow])
def access_log(
    _principal: AccessLogReader,
    session: SessionDep,
    since: datetime | None = None,
    study: Annotated[str | None, Query(max_length=64)] = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[AccessLogRow]:
    """Newest first: who read or wrote which patient data, when and from where (admin only)."""
    rows = repository.list_access_log(
        session,
        since=since,
        study_instance_uid=study,
        username=username,
        limit=limit,
        offset=offset,
    )
    return [AccessLogRow.model_validate(row, from_attributes=True) for row in rows]
