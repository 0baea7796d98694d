"""The worklist page: analysed studies to review, newest first or by AI score."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from service.auth.access_log import record_request_access
from service.auth.page_dependencies import PageReviewer
from service.deps import SessionDep
from service.review import worklist
from service.review.deps import ReviewViewsDep
from service.review.rendering import render
from service.review.study_view import DEFAULT_OVERLAYS
from service.review.view_files import ViewTarget
from service.review.worklist import WorklistQuery

router = APIRouter()
# The first rows are the likeliest to be opened: make their view files ahead of the click.
PREFETCH_ROWS = 3


@router.get("/", name="worklist")
def worklist_page(
    request: Request,
    login: PageReviewer,
    session: SessionDep,
    views: ReviewViewsDep,
    query: Annotated[WorklistQuery, Query()],
) -> HTMLResponse:
    """Studies with analyses: filters, counts, paging; each row links to the study view."""
    result = worklist.build(session, query)
    record_request_access(
        request,
        login.principal,
        "review.worklist",
        session=session,
        result_count=len(result.rows),
    )
    archive = request.app.state.archive
    views.prefetch(
        (
            ViewTarget(
                r.item.analysis_id, archive.path(r.item.file_path), r.item.rows, r.item.columns
            )
            for r in result.rows[:PREFETCH_ROWS]
        ),
        DEFAULT_OVERLAYS,
    )
    return render(request, "worklist.html", {"worklist": result, "query": query})
