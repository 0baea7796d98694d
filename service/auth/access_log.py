"""Write the access log: one row for every read or write of patient data."""

from __future__ import annotations

import uuid
from typing import Any, cast

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Table, insert

from service.auth.service import Principal
from service.db import Executes, commit_statement
from service.deps import client_addr, request_id
from service.loop_database import LoopDatabase
from service.orm import AccessLogEntry
from service.orm.base import utcnow
from service.runtime import Runtime

# A Core INSERT built once: every request that touches patient data runs it, and adding an
# ORM object for the session to flush cost twice as much.
_INSERT = insert(cast(Table, AccessLogEntry.__table__))


def record_access(
    *,
    session: Executes,
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
    """Insert an access-log row in an open transaction (committed with the request's work)."""
    session.execute(
        _INSERT,
        [
            _row(
                principal,
                action,
                status_code,
                client_addr,
                request_id,
                study_instance_uid,
                series_instance_uid,
                sop_instance_uid,
                result_count,
            )
        ],
    )


def record_request_access(
    request: Request,
    principal: Principal,
    action: str,
    *,
    session: Executes | None = None,
    status_code: int = 200,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    result_count: int | None = None,
) -> None:
    """Insert the access-log row of an HTTP request (with its peer address and request id):
    in ``session`` when given, committed with the request's work; else committed now, on its
    own, before the answer goes out.

    The second suits reads done outside any writing transaction: on SQLite a writing
    transaction holds the one write lock, and a search or a rendering must not hold up stores.
    It commits on the runtime's ``read_log_engine`` (on SQLite, without waiting for the disk).
    """
    row = _row(
        principal,
        action,
        status_code,
        client_addr(request),
        request_id(request),
        study_instance_uid,
        series_instance_uid,
        sop_instance_uid,
        result_count,
    )
    if session is not None:
        session.execute(_INSERT, [row])
        return
    runtime: Runtime = request.app.state.runtime
    commit_statement(runtime.read_log_engine, _INSERT, row)


async def commit_request_access(
    request: Request,
    principal: Principal,
    action: str,
    *,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    result_count: int | None = None,
) -> None:
    """Commit the access-log row of a read before its answer goes out, as
    ``record_request_access`` does without a session: on the event loop itself when it can
    write at once (SQLite, see ``loop_database``), else in a worker thread that waits its turn.
    """
    row = _row(
        principal,
        action,
        200,
        client_addr(request),
        request_id(request),
        study_instance_uid,
        series_instance_uid,
        sop_instance_uid,
        result_count,
    )
    loop_database: LoopDatabase | None = getattr(request.app.state, "loop_database", None)
    if loop_database is not None and loop_database.try_commit(_INSERT, row):
        return
    runtime: Runtime = request.app.state.runtime
    await run_in_threadpool(commit_statement, runtime.read_log_engine, _INSERT, row)


def _row(
    principal: Principal,
    action: str,
    status_code: int,
    client_addr: str,
    request_id: str,
    study_instance_uid: str | None,
    series_instance_uid: str | None,
    sop_instance_uid: str | None,
    result_count: int | None,
) -> dict[str, Any]:
    return {
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
