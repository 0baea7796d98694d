"""What the study view's canvas loads: the image for window/level, overlays, region outlines.

Cookie-authenticated twins of API resources, sized for the screen and cacheable by the
browser for an hour (their content depends only on the analysis).
"""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from service.analysis.results_files import OverlayKind
from service.auth.page_dependencies import PageReviewer
from service.review.access import log_access, read_context
from service.review.deps import ReviewViewsDep, regions_with_probabilities, view_target

router = APIRouter()
# Private: only this browser may keep them. An hour covers a reading session; logging out
# asks the browser to drop them (Clear-Site-Data).
CACHE = {"Cache-Control": "private, max-age=3600"}


@router.get("/analyses/{analysis_id}/image.bin", name="view_image")
def view_image(
    analysis_id: uuid.UUID, request: Request, login: PageReviewer, views: ReviewViewsDep
) -> FileResponse:
    """The image in modality units, screen-sized (format ``vigil-view-1``)."""
    context = read_context(request, analysis_id)
    path = views.image(view_target(request.app.state.archive, context[0], context[1]))
    log_access(request, login.principal, "review.image", context)
    return FileResponse(path, media_type="application/octet-stream", headers=CACHE)


@router.get("/analyses/{analysis_id}/overlays/{kind}.png", name="view_overlay")
def view_overlay(
    analysis_id: uuid.UUID,
    kind: OverlayKind,
    request: Request,
    login: PageReviewer,
    views: ReviewViewsDep,
) -> FileResponse:
    """One overlay, screen-sized RGBA; its colour scale in the ``X-Vigil-Legend`` header."""
    context = read_context(request, analysis_id)
    path, legend = views.overlay(
        view_target(request.app.state.archive, context[0], context[1]), kind
    )
    log_access(request, login.principal, "review.overlay", context)
    headers = CACHE | {"X-Vigil-Legend": json.dumps(legend, separators=(",", ":"))}
    return FileResponse(path, media_type="image/png", headers=headers)


@router.get("/analyses/{analysis_id}/regions.json", name="view_regions")
def view_regions(
    analysis_id: uuid.UUID, request: Request, login: PageReviewer, views: ReviewViewsDep
) -> JSONResponse:
    """The regions' outlines in image pixels, with their probabilities."""
    context = read_context(request, analysis_id)
    geometry = views.regions(view_target(request.app.state.archive, context[0], context[1]))
    log_access(request, login.principal, "review.regions", context)
    return JSONResponse(regions_with_probabilities(context[0], geometry), headers=CACHE)
