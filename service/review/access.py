"""Access-log rows for the review pages and API: every view of patient data, every decision."""

from __future__ import annotations

import uuid

from fastapi import Request
from sqlalchemy.orm import Session

from service.analysis import repository as analyses
from service.auth.access_log import record_request_access
from service.auth.service import Principal
from service.deps import session_factory_of
from service.errors import NotFound
from service.orm import Analysis, Instance, Series, Study

Context = tuple[Analysis, Instance, Series, Study]


def analysis_context(session: Session, analysis_id: uuid.UUID) -> Context:
    """Return an analysis with its image, series and study; NotFound when there is none."""
    found = analyses.get_with_context(session, analysis_id)
    if found is None:
        raise NotFound(f"no analysis {analysis_id}")
    return found


def read_context(request: Request, analysis_id: uuid.UUID) -> Context:
    """Return an analysis's context through a read-only session, so slow file work that
    follows does not hold SQLite's write lock (the log row is written apart, after)."""
    with session_factory_of(request)() as session:
        return analysis_context(session, analysis_id)


def log_access(
    request: Request,
    principal: Principal,
    action: str,
    context: Context,
    *,
    session: Session | None = None,
    status_code: int = 200,
    count: int = 1,
) -> None:
    """Write an access-log row about one analysis's image: in the request's session when
    given (committed with its work), else in a short transaction of its own."""
    _analysis, instance, series, study = context
    record_request_access(
        request,
        principal,
        action,
        session=session,
        status_code=status_code,
        study_instance_uid=study.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        sop_instance_uid=instance.sop_instance_uid,
        result_count=count,
    )
