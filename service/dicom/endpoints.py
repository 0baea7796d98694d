"""DICOMweb (PS3.18) under /dicomweb: STOW-RS, QIDO-RS and WADO-RS."""

from __future__ import annotations

from fastapi import APIRouter

from service.dicom import qido_endpoints, stow_endpoints, wado_endpoints

router = APIRouter()
router.include_router(stow_endpoints.router)
router.include_router(qido_endpoints.router)
router.include_router(wado_endpoints.router)
