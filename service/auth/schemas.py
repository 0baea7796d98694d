"""What the auth routes answer."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from service.auth.roles import Permission, Role


class WhoAmI(BaseModel):
    username: str
    role: Role
    permissions: list[Permission]


class AccessLogRow(BaseModel):
    id: UUID
    at: datetime
    username: str
    role: str
    action: str
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    result_count: int | None
    status_code: int
    client_addr: str
    request_id: str
