"""Overlay images of an analysis: drawn from its saved maps, once, and kept as PNG files.

The pipeline saves the maps (raw values, at the working copy's size: the image's geometry,
coarser) and the full-size display image; the overlays are drawn at the image's size, maps
resampled onto it. Drawing the PNGs of a 2k radiograph takes longer than the analysis
itself, so it happens after the results are stored (the job thread does it next) or on the
first request.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from service.analysis.results_files import (
    OverlayKind,
    composite_path,
    load_map,
    overlay_path,
    raw_map_path,
    save_array,
    save_map,
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
from service.results.resize import resize_labels, resize_map

_TITLES = {
    OverlayKind.GRADCAM: "Grad-CAM (arbitrary units)",
    OverlayKind.GRADCAMPP: "Grad-CAM++ (arbitrary units)",
    OverlayKind.OCCLUSION: "occlusion: drop in probability",
    OverlayKind.PROBABILITY: "finding probability",
}
# Fast PNG compression: a viewer may be waiting for the first drawing.
_PNG_LEVEL = 1
_DISPLAY = "display"


def overlay_caption(model_name: str, model_version: str, disclaimer: str) -> str:
    """Return the line every composite carries: which model, and what it is not for."""
    return f"{model_name} {model_version} · {disclaimer}".strip(" ·")


def save_display(root: Path, analysis_id: uuid.UUID, display: np.ndarray) -> Path:
    """Save the display image the overlays are drawn on; return its path (the helper process
    reads it from there to make the Secondary Capture: no megabytes through a pipe)."""
    path = raw_map_path(root, analysis_id, _DISPLAY)
    save_array(path, display)
    return path


def save_maps(
    root: Path, analysis_id: uuid.UUID, maps: dict[OverlayKind, np.ndarray]
) -> dict[OverlayKind, Path]:
    """Save float maps the overlays are drawn from (the probability map, explanations);
    return where each is."""
    paths = {kind: raw_map_path(root, analysis_id, kind.value) for kind in maps}
    for kind, values in maps.items():
        save_map(paths[kind], values)
    return paths


def overlay_png(
    root: Path, analysis_id: uuid.UUID, kind: OverlayKind, *, composite_image: bool, caption: str
) -> Path | None:
    """Return the PNG of one overlay (or composite), drawing it first if needed; None when
    the analysis has no such map."""
    path = (composite_path if composite_image else overlay_path)(root, analysis_id, kind)
    if path.is_file():
        return path
    source = raw_map_path(root, analysis_id, kind.value)
    if not source.is_file():
        return None
    draw_overlay(root, analysis_id, kind, caption=caption)
    return path


def draw_overlays(root: Path, analysis_id: uuid.UUID, kinds: list[str], *, caption: str) -> None:
    """Draw every overlay and composite of an analysis that is not drawn yet."""
    for name in kinds:
        kind = OverlayKind(name)
        if not composite_path(root, analysis_id, kind).is_file():
            draw_overlay(root, analysis_id, kind, caption=caption)


def draw_overlay(root: Path, analysis_id: uuid.UUID, kind: OverlayKind, *, caption: str) -> None:
    """Write one overlay (RGBA) and its composite (RGB with legend and caption) as PNG."""
    display = load_map(raw_map_path(root, analysis_id, _DISPLAY))
    legend: Legend | KeyLegend
    if kind is OverlayKind.LUNGS:
        labels = load_map(raw_map_path(root, analysis_id, kind.value))
        rgba = lungs_rgba(resize_labels(labels, display.shape))
        legend = LUNGS_LEGEND
    else:
        values = resize_map(load_map(raw_map_path(root, analysis_id, kind.value)), display.shape)
        vmin, vmax = display_range(kind, values)
        rgba = heatmap_rgba(values, vmin=vmin, vmax=vmax)
        legend = Legend(label=_TITLES[kind], vmin=vmin, vmax=vmax)
    write_atomically(
        overlay_path(root, analysis_id, kind), encode_png(rgba, compress_level=_PNG_LEVEL)
    )
    image = composite(display, rgba, legend=legend, caption=caption)
    write_atomically(
        composite_path(root, analysis_id, kind), encode_png(image, compress_level=_PNG_LEVEL)
    )


def composite_image(
    display: np.ndarray, values: np.ndarray, kind: OverlayKind, caption: str
) -> np.ndarray:
    """Return the composite RGB image of one map (used for the DICOM Secondary Capture too);
    the map is resampled onto the display image's size."""
    values = resize_map(values, display.shape)
    vmin, vmax = display_range(kind, values)
    legend = Legend(label=_TITLES[kind], vmin=vmin, vmax=vmax)
    rgba = heatmap_rgba(values, vmin=vmin, vmax=vmax)
    return composite(display, rgba, legend=legend, caption=caption)


def display_range(kind: OverlayKind, values: np.ndarray) -> tuple[float, float]:
    """Return the colour scale's range: 0–1 for probabilities, 0 to the peak for the rest."""
    if kind is OverlayKind.PROBABILITY:
        return 0.0, 1.0
    top = float(np.nanmax(values)) if values.size else 0.0
    return 0.0, top if top > 0 else 1.0
