"""The Vigil REST API under /api/v1 (beside the standard DICOMweb routes)."""

from __future__ import annotations

from fastapi import APIRouter

from service.analysis import endpoints as analysis_endpoints
from service.auth import endpoints as auth_endpoints

router = APIRouter()
router.include_router(auth_endpoints.router)
router.include_router(analysis_endpoints.router)
