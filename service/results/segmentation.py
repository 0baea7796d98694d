"""The optional fractional Segmentation (PROBABILITY) of one finding's probability map.

Unlike the Parametric Map, the Segmentation IOD does not require a frame of reference: for a
projection image it is aligned pixel for pixel with the source image and says so through its
derivation references (the route David Clunie describes for 2D X-ray in highdicom issue 159).
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from service.results.local_codes import LOCAL_SCHEME_ITEM, finding_code
from service.results.output_dataset import (
    copy_anatomy,
    pin_dimension_organization,
    pin_volatile_attributes,
    source_header,
)
from service.results.output_identity import MANUFACTURER, OutputIdentity, OutputKind

KIND = OutputKind.PROBABILITY_SEGMENTATION
# 8-bit fractions: steps of 1/255, finer than a display shows, at a quarter of float32 size.
MAX_FRACTIONAL_VALUE = 255


def probability_segmentation(
    source: Dataset,
    probabilities: np.ndarray,
    *,
    finding: str,
    identity: OutputIdentity,
) -> Dataset:
    """Return a fractional (PROBABILITY) SEG of one finding, at the source image's geometry."""
    header = source_header(source)
    expected = (int(header.Rows), int(header.Columns))
    if probabilities.shape != expected:
        raise ValueError(
            f"probability map is {probabilities.shape}, the source image is {expected}"
        )
    pixels = np.asarray(probabilities, dtype=np.float32)
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
        raise ValueError("probabilities must be finite and lie in [0, 1]")
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=f"{finding} probability"[:64],
        segmented_property_category=codes.SCT.Finding,
        segmented_property_type=finding_code(finding),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=identity.model_name,
            family=codes.cid7162.ArtificialIntelligence,
            version=identity.model_version,
            parameters={"weights sha256": identity.weights_sha256},
        ),
        tracking_uid=identity.uid(KIND.value, "segment", finding),
        tracking_id=finding[:64],
    )
    seg = hd.seg.Segmentation(
        source_images=[header],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        segment_descriptions=[segment],
        series_instance_uid=identity.series_uid(KIND),
        series_number=identity.series_number(KIND),
        sop_instance_uid=identity.instance_uid(KIND),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=identity.model_name,
        software_versions=identity.model_version,
        device_serial_number=identity.weights_sha256,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=MAX_FRACTIONAL_VALUE,
        content_label="PROBABILITY",
        content_description=f"{finding} probability, {identity.model_label}"[:64],
        # Every pixel is a probability, zero included: no frame is "empty".
        omit_empty_frames=False,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=identity.series_description(KIND),
        coding_schemes=[LOCAL_SCHEME_ITEM],
    )
    # Pixel Measures are optional without a frame of reference, and the copy highdicom makes
    # would be wrong (RG1's 0\\0 spacing) or unreadable to highdicom (it wants a slice
    # thickness, which a projection has not): the source's own geometry applies, pixel for pixel.
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "PixelMeasuresSequence" in shared:
        del shared.PixelMeasuresSequence
    # Without a frame of reference the General Image module wants the source's orientation.
    seg.PatientOrientation = list(header.get("PatientOrientation") or [])
    copy_anatomy(header, seg)
    seg.ImageComments = (
        f"{identity.disclaimer}. Analysis {identity.analysis_id}; weights sha256 "
        f"{identity.weights_sha256}."
    )
    pin_dimension_organization(seg, identity.uid(KIND.value, "dimension-organization"))
    pin_volatile_attributes(seg, source=header, identity=identity)
    return seg
