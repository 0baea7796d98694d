"""The Vigil REST API under /api/v1 (beside the standard DICOMweb routes)."""

from __future__ import annotations

from fastapi import APIRouter

from service.analysis import endpoints as analysis_endpoints
from service.audit import endpoints as audit_endpoints
from service.auth import endpoints as auth_endpoints
from service.review import api as review_api

router = APIRouter()
router.include_router(auth_endpoints.router)
router.include_router(analysis_endpoints.router)
router.include_router(review_api.router)
router.include_router(audit_endpoints.router)
