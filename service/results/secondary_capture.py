"""The Secondary Capture: the overlay as an RGB image any PACS can show, caption burned in."""

from __future__ import annotations

import warnings

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from service.results.burn_in import burn_in_caption
from service.results.output_dataset import (
    copy_anatomy,
    pin_volatile_attributes,
    source_header,
    source_reference,
    valid_spacing,
)
from service.results.output_identity import MANUFACTURER, OutputIdentity, OutputKind

KIND = OutputKind.SECONDARY_CAPTURE
_PERSON_NAME_WARNING = r"The string .* is unlikely to represent the intended person name"


def caption_lines(identity: OutputIdentity, overlay: str = "Grad-CAM") -> list[str]:
    """Return the lines burned under the image: disclaimer first, then what and which model."""
    return [identity.disclaimer, f"{overlay} overlay · {identity.model_label}"]


def secondary_capture(
    source: Dataset,
    rgb: np.ndarray,
    *,
    identity: OutputIdentity,
    overlay: str = "Grad-CAM",
) -> Dataset:
    """Return an SC image of ``rgb`` (the composite drawn by the caller) with the caption added.

    It joins the source's study in a new series. The caption bar is added below the image, so
    rows and columns keep their directions (Patient Orientation is copied) and, when ``rgb`` has
    the source's size, their spacing too.
    """
    header = source_header(source)
    pixels = burn_in_caption(rgb, caption_lines(identity, overlay))
    same_size = rgb.shape[:2] == (int(header.Rows), int(header.Columns))
    spacing = valid_spacing(header, "PixelSpacing") if same_size else None
    with warnings.catch_warnings():
        # Names are copied from the source as they are; judging them is not this module's job.
        warnings.filterwarnings("ignore", message=_PERSON_NAME_WARNING, category=UserWarning)
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            # PATIENT needs an orientation; a placeholder, replaced by the source's (or emptied).
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            patient_orientation=("L", "F"),
            series_instance_uid=identity.series_uid(KIND),
            series_number=identity.series_number(KIND),
            sop_instance_uid=identity.instance_uid(KIND),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=identity.model_name,
            software_versions=identity.model_version,
            series_description=identity.series_description(KIND),
            # highdicom annotates tuple[int, int] but means millimetres, floats included.
            pixel_spacing=spacing,  # type: ignore[arg-type]
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
    # from_ref_dataset copies only what the SC constructor takes; the rest of the patient and
    # study modules (study description, patient age...) should match the source's too.
    image.copy_patient_and_study_information(header)
    image.PatientOrientation = list(header.get("PatientOrientation") or [])
    image.BurnedInAnnotation = "YES"
    # A chest radiograph shows no face; the overlay adds none.
    image.RecognizableVisualFeatures = "NO"
    image.ImageComments = (
        f"{identity.disclaimer}. {overlay} overlay by {identity.model_label} "
        f"(weights sha256 {identity.weights_sha256}), analysis {identity.analysis_id}."
    )
    image.DerivationDescription = f"{overlay} heatmap blended over the source image"
    image.SourceImageSequence = [source_reference(header)]
    copy_anatomy(header, image)
    pin_volatile_attributes(image, source=header, identity=identity)
    return image
