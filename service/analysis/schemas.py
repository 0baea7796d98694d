"""What the analysis routes accept and answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.orm import AnalysisStatus


class AnalysisRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, max_length=128, description="Default: the site's model")
    methods: list[str] | None = Field(
        default=None, max_length=3, description="gradcam (default), gradcampp, occlusion"
    )


class ModelIdentity(BaseModel):
    name: str
    version: str
    sha256: str
    disclaimer: str = ""


class Finding(BaseModel):
    label: str
    probability: float


class Region(BaseModel):
    name: str
    probability: float


class AnalysisOut(BaseModel):
    id: uuid.UUID
    status: AnalysisStatus
    failure_reason: str | None
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    model: ModelIdentity
    methods: list[str]
    trigger: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    findings: list[Finding] = []
    regions: list[Region] = []
    overlays: list[str] = []
    outputs: dict[str, str] = {}
    timings_ms: dict[str, float] = {}
    bias: dict[str, Any] | None = None
    forwarding: dict[str, Any] | None = None


class RequestedOut(BaseModel):
    sop_instance_uid: str
    analysis_id: uuid.UUID | None
    status: AnalysisStatus | None
    created: bool
    skipped: str | None


class RequestAnswer(BaseModel):
    study_instance_uid: str
    model: ModelIdentity
    methods: list[str]
    analyses: list[RequestedOut]
