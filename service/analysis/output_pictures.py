"""The picture outputs of an analysis: the Secondary Capture and the two Parametric Maps.

They need only the image and the maps (not the lungs, the regions or the audit), so they are
built as soon as the classifier is done, in the helper process beside the rest of the
pipeline (see ``helper_process``). Inputs and outputs cross a process boundary: plain data,
a header without pixels, Part 10 bytes back. Nothing here imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from service.analysis.overlay_images import composite_image
from service.analysis.results_files import OverlayKind
from service.results.output_dataset import source_header, to_part10_bytes
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
    display: np.ndarray  # uint8 display image (shrunk in the helper)
    probability_map: np.ndarray
    gradcam: np.ndarray | None
    identity: OutputIdentity

    @classmethod
    def of(
        cls,
        source: Dataset,
        display: np.ndarray,
        *,
        probability_map: np.ndarray,
        gradcam: np.ndarray | None,
        identity: OutputIdentity,
    ) -> PictureInputs:
        return cls(
            header=source_header(source),
            display=display,
            probability_map=probability_map,
            gradcam=gradcam,
            identity=identity,
        )


@dataclass(frozen=True)
class Pictures:
    objects: dict[str, bytes]  # output name → Part 10 bytes
    elapsed_ms: float


def build_pictures(inputs: PictureInputs) -> Pictures:
    """Return the Secondary Capture (Grad-CAM burned in, else the probability map) and the
    Parametric Maps of the probability map and the Grad-CAM, as Part 10 bytes."""
    started = time.perf_counter()
    header, identity, gradcam = inputs.header, inputs.identity, inputs.gradcam
    shown, kind, title = (
        (gradcam, OverlayKind.GRADCAM, "Grad-CAM")
        if gradcam is not None
        else (inputs.probability_map, OverlayKind.PROBABILITY, "Probability")
    )
    # The Secondary Capture adds its own caption (disclaimer, model) below the image.
    rgb = composite_image(fit_within(inputs.display, SC_MAX_SIDE), shown, kind, caption="")
    built = {"secondary_capture": secondary_capture(header, rgb, identity=identity, overlay=title)}
    maps = {"probability_map": (np.clip(inputs.probability_map, 0.0, 1.0), "probability")}
    if gradcam is not None:
        maps["gradcam_map"] = (gradcam, "gradcam")
    for name, (values, quantity) in maps.items():
        built[name] = parametric_map(header, values, quantity=quantity, identity=identity)
    objects = {name: to_part10_bytes(ds) for name, ds in built.items()}
    return Pictures(objects, round((time.perf_counter() - started) * 1000, 1))
