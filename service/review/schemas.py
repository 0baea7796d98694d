"""What the review API and the decision form accept and answer (one model for both)."""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.analysis.schemas import ModelIdentity
from service.orm import Decision
from service.text_values import Text

MAX_COMMENT_CHARS = 2000
MAX_MARKS = 20
# Always on offer beside the model's own labels: the clinician may see nothing, or something
# the model does not know about (named in the comment).
NO_FINDING = "no finding"
OTHER_FINDING = "other finding"


class Mark(BaseModel):
    """A point the clinician placed, in the source image's pixels (x: column, y: row)."""

    model_config = ConfigDict(extra="forbid")

    x: float
    y: float

    @field_validator("x", "y")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return round(value, 1)


class DecisionIn(BaseModel):
    """One decision on an analysis; ``amends`` names the decision it replaces."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Decision
    label: Text = Field(min_length=1, max_length=64, description="The clinician's own finding")
    marks: list[Mark] = Field(default=[], max_length=MAX_MARKS)
    comment: Text = Field(default="", max_length=MAX_COMMENT_CHARS)
    amends: uuid.UUID | None = None
    opened_at: datetime | None = Field(
        default=None, description="When the reviewer opened the study (for time to decision)"
    )


class ReviewOut(BaseModel):
    id: uuid.UUID
    analysis_id: uuid.UUID
    decision: Decision
    label: str
    marks: list[Mark]
    comment: str
    amends: uuid.UUID | None
    amended_by: uuid.UUID | None
    current: bool = Field(description="Not replaced by an amendment")
    username: str
    role: str
    channel: str
    created_at: datetime
    opened_at: datetime | None
    time_to_decision_ms: int | None
    model: ModelIdentity = Field(description="The model whose result was reviewed")


class RegionShape(BaseModel):
    name: str
    probability: float | None
    box: tuple[int, int, int, int] = Field(description="x0, y0, x1, y1 (exclusive), pixels")
    outline: list[tuple[float, float]] = Field(description="Closed polygon (x, y), pixels")


class RegionsOut(BaseModel):
    analysis_id: uuid.UUID
    columns: int
    rows: int
    source: str = Field(description='"lung zones" or "grid"')
    regions: list[RegionShape]
