"""The bias audit of one analysis: metrics, the counterfactual and the flags, as stored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from service.audit.bias_metrics import (
    ImageMarks,
    PeakPlace,
    fill_with_background,
    heatmap_metrics,
    image_marks,
    image_regions,
    strongest_outside_hotspot,
)
from service.audit.flags import FlagThresholds, bias_flags


def audit_image(
    *,
    display: np.ndarray,
    heatmap: np.ndarray,
    lung_labels: np.ndarray | None,
    burned_in_attribute: str,
    probability: float,
    rescore: Callable[[np.ndarray], float],
    thresholds: FlagThresholds,
    lung_finding: bool = True,
    method: str = "gradcam",
    marks: ImageMarks | None = None,
) -> dict[str, Any]:
    """Return the audit of one image's raw heatmap (JSON-ready): where its mass lies, what
    hiding its strongest hot spot outside the relevant region does, and the flags raised.

    ``marks`` are the display's marks and body when already found (``image_marks``).
    """
    marks = marks or image_marks(display)
    lungs = None if lung_labels is None else lung_labels > 0
    regions = image_regions(display, lungs, marks.boxes, marks.body)
    boxes = regions.boxes  # without the ones inside the lungs (see image_regions)
    metrics = heatmap_metrics(heatmap, regions)
    counterfactual: dict[str, float] | None = None
    hotspot = strongest_outside_hotspot(heatmap, regions.relevant)
    if hotspot is not None:
        after = rescore(fill_with_background(display, hotspot))
        counterfactual = {
            "probability_before": round(probability, 4),
            "probability_after": round(after, 4),
            "change": round(probability - after, 4),
            "hotspot_pixels": int(hotspot.sum()),
        }
    # An empty heatmap (nothing positive: the model found nothing to explain) has no place to
    # be wrong about; it raises no flag rather than "0 % in the lungs".
    flags = (
        []
        if metrics.peak is PeakPlace.NONE
        else bias_flags(
            metrics,
            thresholds,
            relevant_kind=regions.relevant_kind,
            lung_finding=lung_finding,
            counterfactual_change=None if counterfactual is None else counterfactual["change"],
        )
    )
    values = asdict(metrics)
    values["peak"] = metrics.peak.value
    return {
        "method": method,
        "relevant_region": regions.relevant_kind,
        "metrics": {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()},
        "burned_in": {
            "attribute": burned_in_attribute,
            "boxes": [box.as_text() for box in boxes],
        },
        "counterfactual": counterfactual,
        "flags": [asdict(flag) for flag in flags],
        "flagged": bool(flags),
    }
