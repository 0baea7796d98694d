"""The picture outputs of an analysis: the Secondary Capture and the two Parametric Maps.

They need only the image and the maps (not the lungs, the regions or the audit), so the
helper process builds them beside the rest of the pipeline (see ``helper_process``) and
prepares them for filing itself (``prepared_files``): small data and the paths of the saved
display image and maps go in; the prepared files' paths and parsed attributes come back.
Megabytes through a pipe are slow while the server's own thread holds the GIL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from service.analysis.overlay_images import composite_image
from service.analysis.prepared_files import IncomingPlace, PreparedObject, discard, prepare
from service.analysis.results_files import OverlayKind, load_map
from service.dicom.failure import InstanceRejected
from service.errors import PayloadTooLarge
from service.results.output_identity import OutputIdentity
from service.results.parametric_map import parametric_map
from service.results.resize import fit_within
from service.results.secondary_capture import secondary_capture

# The Secondary Capture is a picture for any PACS viewer: at most 1024 pixels a side is
# plenty, and 4× lighter than a 2k radiograph.
SC_MAX_SIDE = 1024


@dataclass(frozen=True)
class PictureInputs:
    header: Dataset  # the source image's attributes, no pixel data
    display: Path  # uint8 display image (.npy)
    probability_map: Path  # (.npy)
    gradcam: Path | None  # (.npy), burned into the Secondary Capture when there is one
    identity: OutputIdentity
    place: IncomingPlace


@dataclass(frozen=True)
class Pictures:
    objects: dict[str, PreparedObject]  # output name → prepared file
    elapsed_ms: float


class PicturesFailed(Exception):
    """A picture output could not be made or prepared; the reason is the archive's."""


def build_pictures(inputs: PictureInputs) -> Pictures:
    """Build the Secondary Capture (the Grad-CAM burned in, else the probability map) and the
    Parametric Maps of the probability map and the Grad-CAM, and prepare them for filing."""
    started = time.perf_counter()
    probability = load_map(inputs.probability_map)
    gradcam = None if inputs.gradcam is None else load_map(inputs.gradcam)
    built = {"secondary_capture": secondary_capture_of(inputs, probability, gradcam)}
    built |= parametric_maps(
        inputs.header, probability_map=probability, gradcam=gradcam, identity=inputs.identity
    )
    archive = inputs.place.archive()
    prepared: dict[str, PreparedObject] = {}
    try:
        for name, ds in built.items():
            prepared[name] = prepare(archive, inputs.place.max_bytes, ds)
    except (InstanceRejected, PayloadTooLarge) as exc:
        discard(prepared.values())
        reason = exc.reason if isinstance(exc, InstanceRejected) else exc.message
        raise PicturesFailed(reason) from None
    except BaseException:
        discard(prepared.values())
        raise
    return Pictures(prepared, round((time.perf_counter() - started) * 1000, 1))


def secondary_capture_of(
    inputs: PictureInputs, probability: np.ndarray, gradcam: np.ndarray | None
) -> Dataset:
    """Return the Secondary Capture: the display image with the map burned in and its legend."""
    shown, kind, title = (
        (gradcam, OverlayKind.GRADCAM, "Grad-CAM")
        if gradcam is not None
        else (probability, OverlayKind.PROBABILITY, "Probability")
    )
    display = fit_within(load_map(inputs.display), SC_MAX_SIDE)
    # The Secondary Capture adds its own caption (disclaimer, model) below the image.
    rgb = composite_image(display, shown, kind, caption="")
    return secondary_capture(inputs.header, rgb, identity=inputs.identity, overlay=title)


def parametric_maps(
    header: Dataset,
    *,
    probability_map: np.ndarray,
    gradcam: np.ndarray | None,
    identity: OutputIdentity,
) -> dict[str, Dataset]:
    """Return the Parametric Maps of the probability map and (if made) the Grad-CAM."""
    maps = {"probability_map": (np.clip(probability_map, 0.0, 1.0), "probability")}
    if gradcam is not None:
        maps["gradcam_map"] = (gradcam, "gradcam")
    return {
        name: parametric_map(header, values, quantity=quantity, identity=identity)
        for name, (values, quantity) in maps.items()
    }
