"""Dependencies shared by the review API and pages: the view files and what they are made of."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from service.analysis.views import not_done_reason
from service.dicom.archive import Archive
from service.errors import NotFound
from service.orm import Analysis, AnalysisStatus, Instance
from service.review.view_files import ReviewViews, ViewTarget


async def get_review_views(request: Request) -> ReviewViews:
    return request.app.state.review_views  # type: ignore[no-any-return]


ReviewViewsDep = Annotated[ReviewViews, Depends(get_review_views)]


def view_target(archive: Archive, analysis: Analysis, instance: Instance) -> ViewTarget:
    """Return what the view files of a done analysis are made from; NotFound before it is."""
    if analysis.status is not AnalysisStatus.DONE:
        raise NotFound(not_done_reason(analysis, "no images"))
    return ViewTarget(
        analysis_id=analysis.id,
        dicom_path=archive.path(instance.file_path),
        rows=instance.rows or 0,
        columns=instance.columns or 0,
        overlays=tuple((analysis.results or {}).get("overlays", ())),
    )


def regions_with_probabilities(analysis: Analysis, geometry: dict[str, Any]) -> dict[str, Any]:
    """Return the regions' geometry with each region's probability from the analysis."""
    probabilities = {
        r["name"]: r["probability"] for r in (analysis.results or {}).get("regions", [])
    }
    return {
        "source": geometry["source"],
        "regions": [
            {
                "name": shape["name"],
                "probability": probabilities.get(shape["name"]),
                "box": shape["box"],
                "outline": shape["outline"],
            }
            for shape in geometry["regions"]
        ],
    }
