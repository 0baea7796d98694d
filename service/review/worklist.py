"""The worklist: done analyses with their review status, filtered, counted, sorted, paged.

Findings and bias flags live in each analysis's results JSON, so sorting by AI score and the
status filters run here over the rows the database filters (date, modality, model) let
through. That is fine for the thousands of analyses a site reviews; a score column on
analyses would let the database sort when it is millions.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session

from service.orm import Decision, Review
from service.review import repository
from service.review.repository import WorklistCandidate

Sort = Literal["newest", "score"]
StatusFilter = Literal["all", "unreviewed", "reviewed", "disagreed"]


class WorklistQuery(BaseModel):
    """The worklist's query string; the study view carries it along for next / previous."""

    sort: Sort = "newest"
    status: StatusFilter = "all"
    flagged: bool = False
    date_from: date | None = None
    date_to: date | None = None
    modality: str = Field(default="", max_length=16)
    model: str = Field(default="", max_length=128)
    page: int = Field(default=1, ge=1, le=100_000)
    per_page: int = Field(default=25, ge=5, le=200)

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # an empty date input sends ""

    def as_params(self, **changes: Any) -> str:
        """Return the query string of this query with some values changed (defaults left out)."""
        values = self.model_dump() | changes
        defaults = WorklistQuery().model_dump()
        kept = {k: _param(v) for k, v in values.items() if v != defaults.get(k) and v is not None}
        return urlencode(kept)


@dataclass(frozen=True)
class WorklistRow:
    item: WorklistCandidate
    top_label: str | None
    top_probability: float | None
    flag_reasons: list[str]
    latest: Review | None  # the newest current decision
    disagreed: bool

    @property
    def flagged(self) -> bool:
        return bool(self.flag_reasons)

    @property
    def status(self) -> str:
        return "unreviewed" if self.latest is None else self.latest.decision.value


@dataclass(frozen=True)
class Worklist:
    rows: list[WorklistRow]  # this page's
    total: int  # rows that pass every filter
    counts: dict[str, int]  # all, unreviewed, reviewed, disagreed, flagged (status filters aside)
    page: int
    pages: int
    modalities: list[str]
    models: list[str]
    pending: int  # analyses still queued or running


def build(session: Session, query: WorklistQuery) -> Worklist:
    """Return one page of the worklist for a query."""
    rows = _rows(session, query)
    counts = {
        "all": len(rows),
        "unreviewed": sum(1 for r in rows if r.latest is None),
        "reviewed": sum(1 for r in rows if r.latest is not None),
        "disagreed": sum(1 for r in rows if r.disagreed),
        "flagged": sum(1 for r in rows if r.flagged),
    }
    matching = _sorted(_filtered(rows, query), query.sort)
    pages = max(1, math.ceil(len(matching) / query.per_page))
    page = min(query.page, pages)
    start = (page - 1) * query.per_page
    modalities, models = repository.worklist_choices(session)
    return Worklist(
        rows=matching[start : start + query.per_page],
        total=len(matching),
        counts=counts,
        page=page,
        pages=pages,
        modalities=modalities,
        models=models,
        pending=repository.count_pending(session),
    )


def neighbours(
    session: Session, query: WorklistQuery, analysis_id: uuid.UUID
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """Return the previous and next analyses around one in the worklist's order. One that
    left the list (reviewed, under the "unreviewed" filter) has the list's first as next."""
    order = [
        r.item.analysis_id for r in _sorted(_filtered(_rows(session, query), query), query.sort)
    ]
    if analysis_id not in order:
        return None, order[0] if order else None
    at = order.index(analysis_id)
    return (order[at - 1] if at > 0 else None), (order[at + 1] if at + 1 < len(order) else None)


def _rows(session: Session, query: WorklistQuery) -> list[WorklistRow]:
    candidates = repository.worklist_candidates(
        session,
        date_from=query.date_from.strftime("%Y%m%d") if query.date_from else None,
        date_to=query.date_to.strftime("%Y%m%d") if query.date_to else None,
        modality=query.modality or None,
        model=query.model or None,
    )
    current: dict[uuid.UUID, list[Review]] = {}
    for review in repository.current_reviews(session, [c.analysis_id for c in candidates]):
        current.setdefault(review.analysis_pk, []).append(review)
    return [_row(c, current.get(c.analysis_id, [])) for c in candidates]


def _row(item: WorklistCandidate, current: list[Review]) -> WorklistRow:
    top = max(item.findings, key=lambda f: f.get("probability", 0.0), default=None)
    bias = item.bias or {}
    reasons = [f.get("reason", f.get("code", "")) for f in bias.get("flags", [])]
    if bias.get("flagged") and not reasons:
        reasons = ["flagged by the bias audit"]
    return WorklistRow(
        item=item,
        top_label=None if top is None else top.get("label"),
        top_probability=None if top is None else top.get("probability"),
        flag_reasons=reasons,
        latest=current[-1] if current else None,
        disagreed=any(r.decision is Decision.DISAGREE for r in current),
    )


def _filtered(rows: list[WorklistRow], query: WorklistQuery) -> list[WorklistRow]:
    return [r for r in rows if _has_status(r, query.status) and (r.flagged or not query.flagged)]


def _has_status(row: WorklistRow, status: StatusFilter) -> bool:
    if status == "unreviewed":
        return row.latest is None
    if status == "reviewed":
        return row.latest is not None
    if status == "disagreed":
        return row.disagreed
    return True


def _sorted(rows: list[WorklistRow], sort: Sort) -> list[WorklistRow]:
    # Ties (and rows without a score) fall back to newest first, then a stable id order.
    newest = sorted(
        rows,
        key=lambda r: (
            r.item.study_date,
            r.item.study_time,
            r.item.analysed_at,
            str(r.item.analysis_id),
        ),
        reverse=True,
    )
    if sort == "score":
        return sorted(
            newest, key=lambda r: -(r.top_probability if r.top_probability is not None else -1.0)
        )
    return newest


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
