"""Review decisions: record them (append-only, amendments as new rows) and read them back.

The API and the decision form both come here, so both validate the same way.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.analysis import repository as analyses
from service.analysis.schemas import ModelIdentity
from service.analysis.views import not_done_reason
from service.auth.service import Principal
from service.errors import BadRequest, Conflict, Forbidden, NotFound
from service.orm import Analysis, AnalysisStatus, Instance, Review, ReviewChannel
from service.orm.base import as_utc, utcnow
from service.review import repository
from service.review.schemas import NO_FINDING, OTHER_FINDING, DecisionIn, Mark, ReviewOut

# A study open longer than the longest login is not a decision time worth keeping.
MAX_OPEN = timedelta(days=7)


def allowed_labels(analysis: Analysis) -> list[str]:
    """Return the finding labels a clinician may choose: the model's, then none and other."""
    model_labels = [f["label"] for f in (analysis.results or {}).get("findings", [])]
    return [*model_labels, NO_FINDING, OTHER_FINDING]


def reviewable(session: Session, analysis_id: uuid.UUID) -> tuple[Analysis, Instance]:
    """Return a done analysis and its image; NotFound or Conflict when there is nothing to
    review."""
    found = analyses.get_with_context(session, analysis_id)
    if found is None:
        raise NotFound(f"no analysis {analysis_id}")
    analysis, instance, _series, _study = found
    if analysis.status is not AnalysisStatus.DONE:
        raise Conflict(not_done_reason(analysis, "nothing to review"))
    return analysis, instance


def create(
    *,
    session: Session,
    analysis_id: uuid.UUID,
    decision: DecisionIn,
    principal: Principal,
    channel: ReviewChannel,
    now: datetime | None = None,
) -> Review:
    """Record a decision (or an amendment of one) and return it; refuse bad input with a
    reason before anything is written."""
    analysis, instance = reviewable(session, analysis_id)
    labels = allowed_labels(analysis)
    if decision.label not in labels:
        raise BadRequest(
            f"label {decision.label!r} is not one of: {', '.join(repr(x) for x in labels)}"
        )
    _check_marks(decision.marks, columns=instance.columns or 0, rows=instance.rows or 0)
    if decision.amends is not None:
        _check_amendment(session, decision.amends, analysis_id, principal)
    now = now or utcnow()
    elapsed_ms = None
    if decision.opened_at is not None:
        opened = as_utc(decision.opened_at)
        if opened > now:
            raise BadRequest("opened_at lies in the future")
        if now - opened > MAX_OPEN:
            raise BadRequest(f"opened_at lies more than {MAX_OPEN.days} days ago")
        elapsed_ms = round((now - opened).total_seconds() * 1000)
    review = Review(
        analysis_pk=analysis.id,
        user_pk=principal.user_pk,
        token_pk=principal.token_pk,
        username=principal.username,
        role=principal.role.value,
        channel=channel.value,
        decision=decision.decision,
        finding_label=decision.label,
        marks=[m.model_dump() for m in decision.marks],
        comment=decision.comment,
        amends_pk=decision.amends,
        opened_at=decision.opened_at,
        time_to_decision_ms=elapsed_ms,
        created_at=now,
    )
    try:
        with session.begin_nested():  # a refused row leaves the request's other work intact
            session.add(review)
    except IntegrityError:
        # Two amendments of one decision at the same moment: the unique key let one in.
        raise Conflict(f"decision {decision.amends} was amended meanwhile; reload") from None
    return review


def list_for_analysis(*, session: Session, analysis_id: uuid.UUID) -> list[ReviewOut]:
    """Return every decision on an analysis, oldest first, each saying whether it is current."""
    found = analyses.get_with_context(session, analysis_id)
    if found is None:
        raise NotFound(f"no analysis {analysis_id}")
    analysis = found[0]
    reviews = repository.list_reviews(session, analysis_id)
    return outs(analysis, reviews)


def outs(analysis: Analysis, reviews: list[Review]) -> list[ReviewOut]:
    """Return the API view of an analysis's decisions (all of them, so amendments link up)."""
    amended_by = {r.amends_pk: r.id for r in reviews if r.amends_pk is not None}
    model = ModelIdentity(
        name=analysis.model_name,
        version=analysis.model_version,
        sha256=analysis.model_sha256,
        disclaimer=(analysis.results or {}).get("disclaimer", ""),
    )
    return [
        ReviewOut(
            id=r.id,
            analysis_id=r.analysis_pk,
            decision=r.decision,
            label=r.finding_label,
            marks=[Mark(**m) for m in r.marks],
            comment=r.comment,
            amends=r.amends_pk,
            amended_by=amended_by.get(r.id),
            current=r.id not in amended_by,
            username=r.username,
            role=r.role,
            channel=r.channel,
            created_at=r.created_at,
            opened_at=r.opened_at,
            time_to_decision_ms=r.time_to_decision_ms,
            model=model,
        )
        for r in reviews
    ]


def _check_marks(marks: list[Mark], *, columns: int, rows: int) -> None:
    for number, mark in enumerate(marks, start=1):
        if not (0 <= mark.x < columns and 0 <= mark.y < rows):
            raise BadRequest(
                f"mark {number} at ({mark.x:g}, {mark.y:g}) lies outside the image "
                f"({columns} × {rows} pixels: x from 0 to {columns}, y from 0 to {rows})"
            )


def _check_amendment(
    session: Session, amends: uuid.UUID, analysis_id: uuid.UUID, principal: Principal
) -> None:
    earlier = repository.get_review(session, amends)
    if earlier is None or earlier.analysis_pk != analysis_id:
        raise NotFound(f"no decision {amends} on analysis {analysis_id} to amend")
    if earlier.username != principal.username:
        raise Forbidden(
            f"only {earlier.username} may amend their decision; record a decision of your own"
        )
    if repository.is_amended(session, amends):
        raise Conflict(f"decision {amends} was already amended: amend the newest one")
