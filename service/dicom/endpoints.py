"""DICOMweb (PS3.18) under /dicomweb: STOW-RS, QIDO-RS and WADO-RS."""

from __future__ import annotations

from fastapi import APIRouter

from service.dicom import qido_endpoints, stow_endpoints, wado_endpoints

# Included into the app one by one, not through a router of their own: every level of
# included routers matches a request's path once more. Retrieves and searches come first,
# the calls a viewer makes most.
routers: tuple[APIRouter, ...] = (
    wado_endpoints.router,
    qido_endpoints.router,
    stow_endpoints.router,
)
