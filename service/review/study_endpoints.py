"""The study view and its decision form (plus next / previous in the worklist's order)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.auth.page_dependencies import PageDecider, PageReviewer
from service.deps import SessionDep, SettingsDep, session_factory_of
from service.errors import BadRequest, VigilError
from service.orm import ReviewChannel
from service.review import service, worklist
from service.review.access import Context, analysis_context, log_access
from service.review.deps import ReviewViewsDep, view_target
from service.review.rendering import BASE, render
from service.review.schemas import DecisionIn
from service.review.study_view import DEFAULT_OVERLAYS, opened_at, study_context
from service.review.view_files import ReviewViews
from service.review.worklist import WorklistQuery
from service.text_values import Text

router = APIRouter()
WorklistParams = Annotated[WorklistQuery, Query()]
# Generous limits on raw fields: the decision's own rules (DecisionIn) give the reasons.
RawField = Annotated[Text, Form(max_length=20_000)]


@router.get("/analyses/{analysis_id}", name="study")
def study_page(
    analysis_id: uuid.UUID,
    request: Request,
    login: PageReviewer,
    session: SessionDep,
    settings: SettingsDep,
    views: ReviewViewsDep,
    query: WorklistParams,
    saved: bool = False,
) -> HTMLResponse:
    """The image with overlays, the model's results, the bias flag, the decision form and
    the decisions made so far."""
    context = analysis_context(session, analysis_id)
    service.reviewable(session, analysis_id)
    page = study_context(
        session=session,
        context=context,
        login=login.principal,
        query=query,
        secret_key=settings.secret_key,
    )
    log_access(request, login.principal, "review.study", context, session=session)
    _prepare(request, views, query, context)
    return render(request, "study.html", page | {"form": {}, "saved": saved, "error": None})


@router.get("/analyses/{analysis_id}/next", name="next_study")
def next_study(
    analysis_id: uuid.UUID, login: PageReviewer, session: SessionDep, query: WorklistParams
) -> Response:
    """Go to the next study of the worklist (J), or back to the worklist at its end."""
    return _go(session, query, analysis_id, forward=True)


@router.get("/analyses/{analysis_id}/previous", name="previous_study")
def previous_study(
    analysis_id: uuid.UUID, login: PageReviewer, session: SessionDep, query: WorklistParams
) -> Response:
    """Go to the previous study of the worklist (K), or back to the worklist at its start."""
    return _go(session, query, analysis_id, forward=False)


@router.post("/analyses/{analysis_id}/decisions", name="record_decision")
def record_decision(
    analysis_id: uuid.UUID,
    request: Request,
    login: PageDecider,
    session: SessionDep,
    settings: SettingsDep,
    query: WorklistParams,
    decision: RawField = "",
    label: RawField = "",
    comment: RawField = "",
    marks: RawField = "",
    amends: RawField = "",
    opened: RawField = "",
) -> Response:
    """Record the form's decision (an amendment when it names one) and show the study again;
    bad input shows the form again with the reason and the values as they were."""
    context = analysis_context(session, analysis_id)
    submitted = {
        "decision": decision,
        "label": label,
        "comment": comment,
        "marks": marks,
        "amends": amends,
    }
    try:
        body = _decision_from_form(submitted, opened_at(settings.secret_key, analysis_id, opened))
        review = service.create(
            session=session,
            analysis_id=analysis_id,
            decision=body,
            principal=login.principal,
            channel=ReviewChannel.PAGE,
        )
    except VigilError as exc:
        page = study_context(
            session=session,
            context=context,
            login=login.principal,
            query=query,
            secret_key=settings.secret_key,
        )
        page |= {"form": submitted, "saved": False, "error": exc.message}
        return render(request, "study.html", page, status_code=exc.status_code)
    log_access(request, login.principal, "review.create", context, session=session, status_code=303)
    params = query.as_params(page=1, saved=True)
    target = f"{BASE}/analyses/{analysis_id}?{params}#decision-{review.id}"
    return RedirectResponse(target, status_code=303)


def _decision_from_form(submitted: dict[str, str], opened: datetime | None) -> DecisionIn:
    """Return the decision of a form, checked by the same rules as the API's."""
    try:
        marks = json.loads(submitted["marks"]) if submitted["marks"].strip() else []
    except json.JSONDecodeError:
        raise BadRequest("marks: not a list of points (the page sends them as JSON)") from None
    try:
        return DecisionIn.model_validate(
            {
                "decision": submitted["decision"] or None,
                "label": submitted["label"],
                "marks": marks,
                "comment": submitted["comment"],
                "amends": submitted["amends"] or None,
                "opened_at": opened,
            }
        )
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise BadRequest("; ".join(problems)) from None


def _go(
    session: Session, query: WorklistQuery, analysis_id: uuid.UUID, *, forward: bool
) -> Response:
    previous, following = worklist.neighbours(session, query, analysis_id)
    target = following if forward else previous
    params = query.as_params(page=1)
    if target is None:
        return RedirectResponse(f"{BASE}/?{params}", status_code=303)
    return RedirectResponse(f"{BASE}/analyses/{target}?{params}", status_code=303)


def _prepare(request: Request, views: ReviewViews, query: WorklistQuery, context: Context) -> None:
    """Make this study's view files in the background while the page travels and its
    scripts start (the browser's requests wait for them), then those of the studies J and
    K lead to."""
    factory, archive = session_factory_of(request), request.app.state.archive
    analysis, instance, _series, _study = context
    views.prefetch([view_target(archive, analysis, instance)], DEFAULT_OVERLAYS)

    def neighbours() -> None:
        targets = []
        with factory() as session:
            for neighbour in worklist.neighbours(session, query, analysis.id):
                if neighbour is not None:
                    found, image, _series, _study = analysis_context(session, neighbour)
                    targets.append(view_target(archive, found, image))
        views.prefetch(targets, DEFAULT_OVERLAYS)

    views.in_background(neighbours)
