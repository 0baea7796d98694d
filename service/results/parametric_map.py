"""Parametric Maps: the probability map and the Grad-CAM as float images (OHIF shows them).

A chest CR or DX has no frame of reference, but the Parametric Map IOD requires one, and
highdicom 0.28 fails on source images without it ("Unexpected mismatch between dimension index
values"). So the map is built on a *geometry stand-in* of the source: the same header plus a
new frame of reference (derived from the source's SOP Instance UID, so the maps of one image
share it), a nominal position at the origin, an orientation read from Patient Orientation and
a pixel spacing that is usable. The derivation references still name the real source image,
pixel for pixel.
"""

from __future__ import annotations

from enum import StrEnum

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian

from service.results.output_dataset import (
    as_decimal_string,
    copy_anatomy,
    pin_dimension_organization,
    pin_volatile_attributes,
    source_header,
    valid_spacing,
)
from service.results.output_identity import (
    MANUFACTURER,
    OutputIdentity,
    OutputKind,
    derived_uid,
)
from service.results.resize import fit_within, is_scaled_copy

# Patient Orientation letters as patient-coordinate unit vectors (LPS, PS3.3 C.7.6.1.1.1).
_DIRECTIONS = {
    "L": (1.0, 0.0, 0.0),
    "R": (-1.0, 0.0, 0.0),
    "P": (0.0, 1.0, 0.0),
    "A": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0),
    "F": (0.0, 0.0, -1.0),
}
# Rows run to the patient's left, columns to the feet: a PA chest as it is displayed.
_DEFAULT_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
_NOMINAL_SPACING = (1.0, 1.0)
MAX_MAP_SIDE = 512
# A projection has no slice; the stand-in needs a value for highdicom, the output drops it.
_NOMINAL_THICKNESS = 1.0


class MapQuantity(StrEnum):
    """What a parametric map holds."""

    PROBABILITY = "probability"
    GRADCAM = "gradcam"


_KINDS = {
    MapQuantity.PROBABILITY: OutputKind.PROBABILITY_MAP,
    MapQuantity.GRADCAM: OutputKind.GRADCAM_MAP,
}


def parametric_map(
    source: Dataset,
    values: np.ndarray,
    *,
    quantity: MapQuantity | str,
    identity: OutputIdentity,
    max_side: int = MAX_MAP_SIDE,
) -> Dataset:
    """Return a float32 Parametric Map of ``values``: rows × columns at the source's geometry,
    full size or shrunk by ``fit_within`` (same field, coarser pixels).

    Probability values must lie in [0, 1]; Grad-CAM values in any finite range, which becomes
    the real-world value mapping's range (arbitrary units). Maps larger than ``max_side`` are
    stored coarser (area average, pixel spacing scaled to cover the same field).
    """
    quantity = MapQuantity(quantity)
    kind = _KINDS[quantity]
    header = source_header(source)
    pixels = map_pixels(_checked_values(values, header, quantity), max_side)
    low, high = _value_range(pixels, quantity)
    spacing, spacing_origin = map_pixel_spacing(header)
    row_factor = int(header.Rows) / pixels.shape[0]
    column_factor = int(header.Columns) / pixels.shape[1]
    # As written (a DS holds 16 characters), so the data set in memory is the file's.
    spacing = (
        as_decimal_string(spacing[0] * row_factor),
        as_decimal_string(spacing[1] * column_factor),
    )
    stand_in = geometry_stand_in(header, spacing)
    stand_in.Rows, stand_in.Columns = pixels.shape
    is_probability = quantity is MapQuantity.PROBABILITY
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=quantity.name,
        lut_explanation=_explanation(quantity, identity),
        unit=codes.UCUM.NoUnits if is_probability else codes.UCUM.ArbitraryUnit,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
        quantity_definition=codes.DCM.Probability if is_probability else None,
    )
    pm = hd.pm.ParametricMap(
        source_images=[stand_in],
        pixel_array=pixels,
        series_instance_uid=identity.series_uid(kind),
        series_number=identity.series_number(kind),
        sop_instance_uid=identity.instance_uid(kind),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=identity.model_name,
        software_versions=identity.model_version,
        # The weights' digest names this exact "device"; 64 hex digits fit a DICOM LO.
        device_serial_number=identity.weights_sha256,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(window_center=(low + high) / 2, window_width=high - low)
        ],
        transfer_syntax_uid=ExplicitVRLittleEndian,
        content_label=quantity.name,
        content_description=_explanation(quantity, identity),
        content_qualification=hd.ContentQualificationValues.RESEARCH,
        series_description=identity.series_description(kind),
    )
    _finish(pm, header=header, identity=identity, kind=kind, spacing_origin=spacing_origin)
    return pm


def map_pixels(values: np.ndarray, max_side: int = MAX_MAP_SIDE) -> np.ndarray:
    """Return the map as stored: unchanged, or area-averaged so its long side is ``max_side``.

    The maps are coarse by nature (the classifier's cells are 16 input pixels wide); keeping
    them at a 2k radiograph's full size would file 16 MB per map for no extra information.
    """
    return np.asarray(fit_within(values, max_side), dtype=np.float32)


def frame_of_reference_uid(source: Dataset) -> UID:
    """Return the frame of reference Vigil gives the maps of one source image (stable)."""
    return derived_uid("frame-of-reference", str(source.SOPInstanceUID))


def map_pixel_spacing(header: Dataset) -> tuple[tuple[float, float], str]:
    """Return the (row, column) spacing in mm for a map, and which attribute it came from.

    Pixel Spacing if usable, else Imager Pixel Spacing (at the detector plane), else 1 mm
    marked "nominal": the map's Pixel Measures are mandatory and must be positive.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = valid_spacing(header, keyword)
        if spacing is not None:
            return spacing, keyword
    return _NOMINAL_SPACING, "nominal"


def geometry_stand_in(header: Dataset, spacing: tuple[float, float]) -> Dataset:
    """Return a copy of the source header with the patient geometry highdicom needs.

    A source that places itself in a frame of reference keeps it. Otherwise the stand-in gets
    Vigil's own frame of reference with a nominal plane: positions in the *source's* frame (if
    it names one without a position) would claim a place the image never had.
    """
    stand_in = Dataset()
    stand_in.update(header)
    if not has_patient_geometry(header):
        stand_in.FrameOfReferenceUID = frame_of_reference_uid(header)
        stand_in.PositionReferenceIndicator = ""
        stand_in.ImagePositionPatient = [0.0, 0.0, 0.0]
        stand_in.ImageOrientationPatient = list(_orientation(header))
    stand_in.PixelSpacing = list(spacing)
    stand_in.SliceThickness = stand_in.get("SliceThickness") or _NOMINAL_THICKNESS
    return stand_in


def has_patient_geometry(header: Dataset) -> bool:
    """Return whether the image places itself in a frame of reference (CT/MR-like)."""
    keywords = ("FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient")
    return all(header.get(keyword) for keyword in keywords)


def _orientation(header: Dataset) -> tuple[float, ...]:
    """Return the Image Orientation (Patient) that Patient Orientation implies, or a default."""
    value = header.get("PatientOrientation")
    letters = [str(v) for v in value] if value is not None and not isinstance(value, str) else []
    if len(letters) != 2 or any(letter not in _DIRECTIONS for letter in letters):
        return _DEFAULT_ORIENTATION
    row, column = _DIRECTIONS[letters[0]], _DIRECTIONS[letters[1]]
    if sum(a * b for a, b in zip(row, column, strict=True)) != 0:
        return _DEFAULT_ORIENTATION
    return row + column


def _checked_values(values: np.ndarray, header: Dataset, quantity: MapQuantity) -> np.ndarray:
    expected = (int(header.Rows), int(header.Columns))
    if values.ndim != 2 or not is_scaled_copy(values.shape, expected):
        raise ValueError(
            f"{quantity} map is {values.shape}, the source image is {expected} "
            "(a map covers the image: its size or a scaled-down copy of it)"
        )
    pixels = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise ValueError(f"{quantity} map holds NaN or infinite values")
    if quantity is MapQuantity.PROBABILITY and (pixels.min() < 0 or pixels.max() > 1):
        raise ValueError(f"probabilities must lie in [0, 1], got {pixels.min()} .. {pixels.max()}")
    return pixels


def _value_range(pixels: np.ndarray, quantity: MapQuantity) -> tuple[float, float]:
    if quantity is MapQuantity.PROBABILITY:
        return 0.0, 1.0
    low, high = float(pixels.min()), float(pixels.max())
    # A flat map (all zero when the model saw nothing) still needs a non-empty window.
    return (low, high) if high > low else (low, low + 1.0)


def _explanation(quantity: MapQuantity, identity: OutputIdentity) -> str:
    what = "Finding probability" if quantity is MapQuantity.PROBABILITY else "Grad-CAM"
    return f"{what}, {identity.model_label}"[:64]


def _finish(
    pm: Dataset,
    *,
    header: Dataset,
    identity: OutputIdentity,
    kind: OutputKind,
    spacing_origin: str,
) -> None:
    pin_dimension_organization(pm, identity.uid(kind.value, "dimension-organization"))
    measures = pm.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    for keyword in ("SliceThickness", "SpacingBetweenSlices"):
        if keyword not in header and keyword in measures:
            delattr(measures, keyword)
    copy_anatomy(header, pm)
    geometry = (
        "the frame of reference and plane position are the source's"
        if has_patient_geometry(header)
        else "the frame of reference and plane position are Vigil's own (the source has none)"
    )
    pm.ImageComments = (
        f"{identity.disclaimer}. Analysis {identity.analysis_id}; weights sha256 "
        f"{identity.weights_sha256}. Pixel spacing from {spacing_origin}; {geometry}."
    )
    pin_volatile_attributes(pm, source=header, identity=identity)
