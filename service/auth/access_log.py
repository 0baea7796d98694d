"""Write the access log: one row for every read or write of patient data."""

from __future__ import annotations

import uuid
from typing import cast

from fastapi import Request
from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from service.auth.service import Principal
from service.db import session_scope
from service.deps import client_addr, request_id, session_factory_of
from service.orm import AccessLogEntry
from service.orm.base import utcnow

# A Core INSERT built once: every request that touches patient data runs it, and adding an
# ORM object for the session to flush cost twice as much.
_INSERT = insert(cast(Table, AccessLogEntry.__table__))


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
    """Insert an access-log row in the session's transaction (committed with the request's work)."""
    session.execute(
        _INSERT,
        [
            {
                "id": uuid.uuid4(),
                "at": utcnow(),
                "user_pk": principal.user_pk,
                "token_pk": principal.token_pk,
                "username": principal.username,
                "role": principal.role.value,
                "action": action,
                "study_instance_uid": study_instance_uid,
                "series_instance_uid": series_instance_uid,
                "sop_instance_uid": sop_instance_uid,
                "result_count": result_count,
                "status_code": status_code,
                "client_addr": client_addr[:64],
                "request_id": request_id[:64],
            }
        ],
    )


def record_request_access(
    request: Request,
    principal: Principal,
    action: str,
    *,
    session: Session | None = None,
    status_code: int = 200,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    result_count: int | None = None,
) -> None:
    """Insert the access-log row of an HTTP request (``record_access`` with the request's peer
    address and request id): in ``session`` when given, committed with the request's work;
    else committed now in a short transaction of its own.

    The second suits reads done outside any writing transaction: on SQLite a writing
    transaction holds the one write lock, and a search or a rendering must not hold up stores.
    It commits without waiting for the disk flush unless ``VIGIL_DURABLE_READ_LOG`` is set
    (see ``session_scope``): on a 512² retrieve that wait was a third of the answer's time.
    """
    if session is None:
        durable = request.app.state.settings.durable_read_log
        with session_scope(session_factory_of(request), durable=durable) as own:
            record_request_access(
                request,
                principal,
                action,
                session=own,
                status_code=status_code,
                study_instance_uid=study_instance_uid,
                series_instance_uid=series_instance_uid,
                sop_instance_uid=sop_instance_uid,
                result_count=result_count,
            )
        return
    record_access(
        session=session,
        principal=principal,
        action=action,
        status_code=status_code,
        client_addr=client_addr(request),
        request_id=request_id(request),
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        result_count=result_count,
    )
