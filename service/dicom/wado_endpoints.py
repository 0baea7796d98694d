"""WADO-RS retrieve."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["DICOMweb WADO-RS"])
