"""Draw an analysis's overlay images once, when it runs: the review page only reads files."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from service.analysis.results_files import (
    OverlayKind,
    composite_path,
    overlay_path,
    write_atomically,
)
from service.results.overlays import (
    LUNGS_LEGEND,
    KeyLegend,
    Legend,
    composite,
    encode_png,
    heatmap_rgba,
    lungs_rgba,
)

_TITLES = {
    OverlayKind.GRADCAM: "Grad-CAM (arbitrary units)",
    OverlayKind.GRADCAMPP: "Grad-CAM++ (arbitrary units)",
    OverlayKind.OCCLUSION: "occlusion: drop in probability",
    OverlayKind.PROBABILITY: "finding probability",
}
# Fast PNG compression: drawing happens inside the analysis, whose latency matters.
_PNG_LEVEL = 1


def write_overlays(
    root: Path,
    analysis_id: uuid.UUID,
    display: np.ndarray,
    *,
    probability_map: np.ndarray,
    explanations: dict[str, np.ndarray],
    lung_labels: np.ndarray | None,
    caption: str,
) -> list[str]:
    """Write each overlay (RGBA) and composite (RGB with legend) PNG; return the kinds written."""
    written: list[str] = []
    maps = {OverlayKind.PROBABILITY: probability_map} | {
        OverlayKind(name): values for name, values in explanations.items()
    }
    for kind, values in maps.items():
        vmin, vmax = _display_range(kind, values)
        rgba = heatmap_rgba(values, vmin=vmin, vmax=vmax)
        legend = Legend(label=_TITLES[kind], vmin=vmin, vmax=vmax)
        _write(root, analysis_id, kind, display, rgba, legend, caption)
        written.append(kind.value)
    if lung_labels is not None:
        rgba = lungs_rgba(lung_labels)
        _write(root, analysis_id, OverlayKind.LUNGS, display, rgba, LUNGS_LEGEND, caption)
        written.append(OverlayKind.LUNGS.value)
    return written


def composite_image(
    display: np.ndarray, values: np.ndarray, kind: OverlayKind, caption: str
) -> np.ndarray:
    """Return the composite RGB image of one map (used for the DICOM Secondary Capture too)."""
    vmin, vmax = _display_range(kind, values)
    legend = Legend(label=_TITLES[kind], vmin=vmin, vmax=vmax)
    return composite(
        display, heatmap_rgba(values, vmin=vmin, vmax=vmax), legend=legend, caption=caption
    )


def _display_range(kind: OverlayKind, values: np.ndarray) -> tuple[float, float]:
    if kind is OverlayKind.PROBABILITY:
        return 0.0, 1.0
    top = float(np.nanmax(values)) if values.size else 0.0
    return 0.0, top if top > 0 else 1.0


def _write(
    root: Path,
    analysis_id: uuid.UUID,
    kind: OverlayKind,
    display: np.ndarray,
    rgba: np.ndarray,
    legend: Legend | KeyLegend,
    caption: str,
) -> None:
    write_atomically(
        overlay_path(root, analysis_id, kind), encode_png(rgba, compress_level=_PNG_LEVEL)
    )
    image = composite(display, rgba, legend=legend, caption=caption)
    write_atomically(
        composite_path(root, analysis_id, kind), encode_png(image, compress_level=_PNG_LEVEL)
    )
