"""The Vigil REST API under /api/v1 (beside the standard DICOMweb routes)."""

from __future__ import annotations

from fastapi import APIRouter

from service.analysis import endpoints as analysis_endpoints
from service.audit import endpoints as audit_endpoints
from service.auth import endpoints as auth_endpoints
from service.review import api as review_api

# Included into the app one by one (see service.dicom.endpoints).
routers: tuple[APIRouter, ...] = (
    auth_endpoints.router,
    analysis_endpoints.router,
    review_api.router,
    audit_endpoints.router,
)
