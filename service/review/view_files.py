"""The study view's files, kept beside the analysis's results (``<results>/<id>/review/``):
made on first need, or ahead of time by one background thread for the studies a clinician
is likely to open next. Their content depends only on the analysis, so they never go stale.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from service.analysis.overlay_images import display_range
from service.analysis.results_files import (
    OverlayKind,
    analysis_dir,
    load_map,
    raw_map_path,
    write_atomically,
)
from service.analysis.views import no_overlay
from service.log_config import get_logger
from service.results.overlays import encode_png
from service.results.regions import grid_regions, lung_zones
from service.review.region_outlines import outlines
from service.review.view_image import PNG_LEVEL, heatmap_view, lungs_view, view_image, view_size

log = get_logger(__name__)

OVERLAY_TITLES = {
    OverlayKind.GRADCAM: "Grad-CAM (arbitrary units)",
    OverlayKind.GRADCAMPP: "Grad-CAM++ (arbitrary units)",
    OverlayKind.OCCLUSION: "occlusion: drop in probability",
    OverlayKind.PROBABILITY: "finding probability",
}


@dataclass(frozen=True)
class ViewTarget:
    """What the view files of one analysis are made from."""

    analysis_id: uuid.UUID
    dicom_path: Path
    rows: int
    columns: int
    overlays: tuple[str, ...] = ()  # the kinds of map the analysis made


class ReviewViews:
    """Makes and finds the view files; one lock per file, so a request waits for a prefetch
    already drawing the same file instead of drawing it twice, while the image and the
    overlay of one study are made side by side."""

    def __init__(self, results_root: Path) -> None:
        self.root = results_root
        self._guard = threading.Lock()
        self._locks: dict[tuple[uuid.UUID, str], threading.Lock] = {}
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-views")

    def folder(self, analysis_id: uuid.UUID) -> Path:
        return analysis_dir(self.root, analysis_id) / "review"

    def image(self, target: ViewTarget) -> Path:
        """Return the ``vigil-view-1`` file of the analysed image, making it if needed."""
        path = self.folder(target.analysis_id) / "image.bin"
        with self._lock(target.analysis_id, "image"):
            if not path.is_file():
                view = view_image(pydicom.dcmread(target.dicom_path, force=True))
                write_atomically(path, view.to_bytes())
        return path

    def overlay(self, target: ViewTarget, kind: OverlayKind) -> tuple[Path, dict[str, Any]]:
        """Return the view-sized overlay PNG of one kind and its legend; NotFound when the
        analysis has no such map."""
        folder = self.folder(target.analysis_id)
        png, legend_path = folder / f"overlay-{kind.value}.png", folder / f"{kind.value}.json"
        with self._lock(target.analysis_id, kind.value):
            if not (png.is_file() and legend_path.is_file()):
                source = raw_map_path(self.root, target.analysis_id, kind.value)
                if not source.is_file():
                    raise no_overlay(target.analysis_id, target.overlays, kind.value)
                write_atomically(png, self._draw(target, kind, load_map(source), legend_path))
        return png, json.loads(legend_path.read_text())

    def regions(self, target: ViewTarget) -> dict[str, Any]:
        """Return the regions' geometry (lung zones when lungs were found, else the grid)."""
        path = self.folder(target.analysis_id) / "regions.json"
        with self._lock(target.analysis_id, "regions"):
            if not path.is_file():
                lungs = raw_map_path(self.root, target.analysis_id, OverlayKind.LUNGS.value)
                if lungs.is_file():
                    source, named = "lung zones", lung_zones(load_map(lungs))
                elif OverlayKind.LUNGS.value in target.overlays:  # found once, file gone
                    raise no_overlay(target.analysis_id, target.overlays, OverlayKind.LUNGS.value)
                else:
                    source, named = "grid", grid_regions(target.rows, target.columns)
                shapes = [
                    {"name": name, "box": list(o.box), "outline": [list(p) for p in o.polygon]}
                    for name, o in outlines(named).items()
                ]
                body = {"source": source, "regions": shapes}
                write_atomically(path, json.dumps(body, separators=(",", ":")).encode())
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded

    def prefetch(self, targets: Iterable[ViewTarget], overlays: Iterable[OverlayKind]) -> None:
        """Make the image, the first of these overlays it has, and the regions of each
        target, in the background, in order."""
        kinds = tuple(overlays)
        for target in targets:
            self._prefetcher.submit(self._quietly, functools.partial(self._prepare, target, kinds))

    def in_background(self, work: Callable[[], None]) -> None:
        """Run some preparation on the background thread (it logs, never raises)."""
        self._prefetcher.submit(self._quietly, work)

    def close(self) -> None:
        self._prefetcher.shutdown(wait=False, cancel_futures=True)

    def _prepare(self, target: ViewTarget, overlays: tuple[OverlayKind, ...]) -> None:
        self.image(target)
        for kind in overlays:
            if raw_map_path(self.root, target.analysis_id, kind.value).is_file():
                self.overlay(target, kind)
                break
        self.regions(target)

    @staticmethod
    def _quietly(work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - a failed prefetch is retried on first view
            log.info("review.prefetch_failed", error=f"{type(exc).__name__}: {exc}")

    def _draw(
        self, target: ViewTarget, kind: OverlayKind, values: np.ndarray, legend_path: Path
    ) -> bytes:
        """Return the overlay's PNG bytes, and write its legend beside it."""
        size = view_size(target.rows, target.columns)
        if kind is OverlayKind.LUNGS:
            rgba, legend = lungs_view(values, size)
            data = encode_png(rgba, compress_level=PNG_LEVEL)
        else:
            vmin, vmax = display_range(kind, values)
            data, legend = heatmap_view(
                values, size, vmin=vmin, vmax=vmax, title=OVERLAY_TITLES[kind]
            )
        write_atomically(legend_path, json.dumps(legend | {"kind": kind.value}).encode())
        return data

    def _lock(self, analysis_id: uuid.UUID, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((analysis_id, name), threading.Lock())
