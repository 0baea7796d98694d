"""A clinician's decision on one analysis; rows are never changed, an amendment is a new row."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.orm.base import Base, CreatedAt, UUIDKey


class Decision(StrEnum):
    AGREE = "agree"
    DISAGREE = "disagree"
    UNCERTAIN = "uncertain"


class ReviewChannel(StrEnum):
    PAGE = "page"  # the review pages (session cookie)
    API = "api"  # a viewer through the REST API (token)


class Review(UUIDKey, CreatedAt, Base):
    __tablename__ = "reviews"

    analysis_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("analyses.id"), index=True)
    # Who decided: the user, the token when it came through the API, and the role they held.
    user_pk: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    token_pk: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_tokens.id"))
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8))
    decision: Mapped[Decision] = mapped_column(
        Enum(
            Decision,
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda decisions: [d.value for d in decisions],
            name="review_decision",
        )
    )
    finding_label: Mapped[str] = mapped_column(String(64))
    # Points the clinician placed, in the source image's pixel coordinates: [{"x": .., "y": ..}].
    marks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    # The review this one replaces. Unique: a decision is amended at most once, so the
    # amendments of a decision form one chain even when two amend at the same moment.
    amends_pk: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("reviews.id"), unique=True, default=None
    )
    # When the reviewer opened the study, and how long the decision took from there.
    opened_at: Mapped[datetime | None] = mapped_column(default=None)
    time_to_decision_ms: Mapped[int | None] = mapped_column(default=None)
