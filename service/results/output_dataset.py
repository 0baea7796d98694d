"""What every Vigil DICOM output shares: the source's header, fixed times, Part 10 bytes."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta, timezone

from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds

from service.results.output_identity import OutputIdentity
from service.results.part10_writer import to_part10

# UTF-8, because the disclaimer's en dash (and patient names) are not all Latin-1.
UTF8 = "ISO_IR 192"
SOURCE_IMAGE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# highdicom reads these type-2 attributes from the source with plain attribute access.
_TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_REQUIRED = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Rows",
    "Columns",
)
_UTC_OFFSET = re.compile(r"([+-])(\d\d)(\d\d)")
# highdicom stamps its own contribution with the clock; this finds that item to pin it.
_HIGHDICOM_MODEL_NAME = "highdicom"


def source_header(source: Dataset) -> Dataset:
    """Return the source's attributes without pixel data, with empty type-2 patient/study ones.

    highdicom copies patient and study from the dataset it is given; a header is enough and
    avoids copying megabytes of pixels.
    """
    missing = [keyword for keyword in _REQUIRED if keyword not in source]
    if missing:
        raise ValueError(f"source image lacks {', '.join(missing)}")
    header = Dataset()
    for element in source:
        if element.keyword not in _PIXEL_KEYWORDS:
            header.add(copy.deepcopy(element))
    for keyword in _TYPE2_PATIENT_STUDY:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def source_reference(source: Dataset) -> Dataset:
    """Return a Source Image Sequence item naming the source as input to image processing."""
    value, scheme, meaning = SOURCE_IMAGE_FOR_PROCESSING
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = value, scheme, meaning
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [purpose]
    return item


def valid_spacing(ds: Dataset, keyword: str) -> tuple[float, float] | None:
    """Return a (row, column) spacing in mm from ``keyword`` if it holds two positive numbers.

    Some real files carry "0\\0" (pydicom-data's RG1 chest CR does); such a value must not be
    copied into an output, where it would make the object invalid.
    """
    value = ds.get(keyword)
    try:
        row, column = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (0 < row < float("inf") and 0 < column < float("inf")):
        return None
    return row, column


def copy_anatomy(header: Dataset, ds: Dataset) -> None:
    """Copy Body Part Examined and a left/right laterality from the source into an output.

    Series Laterality only takes R or L; a DX or MG image may name its side in Image
    Laterality instead. Without a body part, the validators cannot rule out a paired organ and
    want Laterality present, so it is written empty (type 2C: unknown).
    """
    body_part = header.get("BodyPartExamined")
    if body_part:
        ds.BodyPartExamined = body_part
    for keyword in ("Laterality", "ImageLaterality"):
        if header.get(keyword) in ("R", "L"):
            ds.Laterality = header.get(keyword)
            return
    if not body_part:
        ds.Laterality = ""


def local_created(identity: OutputIdentity, source: Dataset) -> datetime:
    """Return the creation time in the source's time zone offset, or in UTC if it names none.

    DICOM dates and times are local to the Timezone Offset From UTC of the instance; our
    outputs copy the source's study date and time, so our own times must use its offset too.
    """
    offset = _source_offset(source)
    return identity.created.astimezone(offset or UTC)


def pin_volatile_attributes(ds: Dataset, *, source: Dataset, identity: OutputIdentity) -> None:
    """Overwrite every date and time highdicom took from the clock with the analysis time."""
    created = local_created(identity, source)
    date, time = created.strftime("%Y%m%d"), created.strftime("%H%M%S")
    ds.SpecificCharacterSet = UTF8
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    if "ContentDate" in ds:
        ds.ContentDate, ds.ContentTime = date, time
    if "DateOfSecondaryCapture" in ds:
        ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    for item in ds.get("ContributingEquipmentSequence", []):
        if item.get("ManufacturerModelName") == _HIGHDICOM_MODEL_NAME:
            item.ContributionDateTime = date + time
    if _source_offset(source) is not None:
        ds.TimezoneOffsetFromUTC = source.TimezoneOffsetFromUTC


def pin_dimension_organization(ds: Dataset, uid: str) -> None:
    """Replace the Dimension Organization UID highdicom drew at random with ``uid``."""
    for item in ds.get("DimensionIndexSequence", []):
        item.DimensionOrganizationUID = uid
    for item in ds.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = uid


def as_decimal_string(value: float) -> float:
    """Return ``value`` as a Decimal String (DS, at most 16 characters) stores it, so a data
    set in memory and the file written from it hold the same number."""
    return float(format_number_as_ds(float(value)))


def to_part10_bytes(ds: Dataset) -> bytes:
    """Return the dataset as a DICOM Part 10 file: preamble, file meta, then the data set
    (pydicom's bytes, written faster: see ``part10_writer``)."""
    return to_part10(ds)


def _source_offset(source: Dataset) -> timezone | None:
    match = _UTC_OFFSET.fullmatch(str(source.get("TimezoneOffsetFromUTC", "")).strip())
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    try:
        return timezone(-delta if sign == "-" else delta)
    except ValueError:  # outside ±24 h: not a real offset, ignore it
        return None
