"""Write the access log: one row for every read or write of patient data."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.auth.service import Principal
from service.orm import AccessLogEntry


def record_access(
    *,
    session: Session,
    principal: Principal,
    action: str,
    status_code: int,
    client_addr: str,
    request_id: str,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    result_count: int | None = None,
) -> None:
    """Add an access-log row to the session (committed with the request's work)."""
    session.add(
        AccessLogEntry(
            user_pk=principal.user_pk,
            token_pk=principal.token_pk,
            username=principal.username,
            role=principal.role.value,
            action=action,
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
            result_count=result_count,
            status_code=status_code,
            client_addr=client_addr[:64],
            request_id=request_id[:64],
        )
    )
