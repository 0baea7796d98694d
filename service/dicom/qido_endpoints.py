"""QIDO-RS search."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["DICOMweb QIDO-RS"])
