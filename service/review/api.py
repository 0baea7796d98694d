"""Review decisions for viewers over the REST API (the same rules as the decision form),
and the regions' outlines of an analysis."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from service.auth.dependencies import AnalysisReader, ReviewReader, ReviewWriter
from service.deps import SessionDep
from service.orm import ReviewChannel
from service.review import service
from service.review.access import analysis_context, log_access
from service.review.deps import ReviewViewsDep, regions_with_probabilities, view_target
from service.review.schemas import DecisionIn, RegionsOut, ReviewOut

router = APIRouter(tags=["reviews"])


@router.post("/analyses/{analysis_id}/reviews", status_code=201)
def create_review(
    analysis_id: uuid.UUID,
    body: DecisionIn,
    request: Request,
    principal: ReviewWriter,
    session: SessionDep,
) -> ReviewOut:
    """Record a clinician's decision on an analysis; ``amends`` replaces an earlier one (the
    earlier row stays: decisions are append-only)."""
    review = service.create(
        session=session,
        analysis_id=analysis_id,
        decision=body,
        principal=principal,
        channel=ReviewChannel.API,
    )
    context = analysis_context(session, analysis_id)
    log_access(request, principal, "review.create", context, session=session, status_code=201)
    listed = service.list_for_analysis(session=session, analysis_id=analysis_id)
    return next(r for r in listed if r.id == review.id)


@router.get("/analyses/{analysis_id}/reviews")
def list_reviews(
    analysis_id: uuid.UUID, request: Request, principal: ReviewReader, session: SessionDep
) -> list[ReviewOut]:
    """Every decision on an analysis, oldest first; amended ones have ``current`` false."""
    listed = service.list_for_analysis(session=session, analysis_id=analysis_id)
    context = analysis_context(session, analysis_id)
    log_access(request, principal, "review.list", context, session=session, count=len(listed))
    return listed


@router.get("/analyses/{analysis_id}/regions.json")
def regions(
    analysis_id: uuid.UUID,
    request: Request,
    principal: AnalysisReader,
    session: SessionDep,
    views: ReviewViewsDep,
) -> RegionsOut:
    """The region table's regions as outlines and boxes in image pixels, with probabilities."""
    context = analysis_context(session, analysis_id)
    analysis, instance, _series, _study = context
    geometry = views.regions(view_target(request.app.state.archive, analysis, instance))
    log_access(request, principal, "analysis.regions", context, session=session)
    return RegionsOut.model_validate(
        {
            "analysis_id": analysis.id,
            "columns": instance.columns,
            "rows": instance.rows,
            **regions_with_probabilities(analysis, geometry),
        }
    )
