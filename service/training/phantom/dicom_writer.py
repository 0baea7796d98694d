"""Write a phantom image as a DICOM CR Image or DX Image (for processing), explicit VR LE.

Everything written comes from the image's arguments (no clock, no random UIDs), so the same
inputs give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from service.training.phantom.patients import Patient
from service.training.phantom.sites import Site

CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_IMAGE_FOR_PROCESSING = UID("1.2.840.10008.5.1.4.1.1.1.1.1")
IMPLEMENTATION_VERSION = "VIGIL_PHANTOM_1"
SOFTWARE_VERSION = "vigil phantom 1"


class Modality(StrEnum):
    """Which IOD the phantom is written as."""

    CR = "CR"
    DX = "DX"


class Photometric(StrEnum):
    """Greyscale polarity: MONOCHROME1 shows low stored values as white."""

    MONOCHROME1 = "MONOCHROME1"
    MONOCHROME2 = "MONOCHROME2"


@dataclass(frozen=True)
class InstanceUids:
    """The three identifiers of a one-image study."""

    study: str
    series: str
    sop: str


@dataclass(frozen=True)
class DicomImage:
    """What the writer needs: stored pixels and the facts that become DICOM attributes."""

    pixels: npt.NDArray[np.uint16]  # stored values, already inverted for MONOCHROME1
    photometric: Photometric
    spacing_mm: float
    window_center: int  # in stored values
    window_width: int
    modality: Modality
    patient: Patient
    site: Site
    uids: InstanceUids
    burned_in_annotation: bool


def instance_uids(fingerprint: str, image_id: str) -> InstanceUids:
    """Return UIDs derived from the run's fingerprint and the image id (same in, same out)."""
    return InstanceUids(
        *(
            str(generate_uid(entropy_srcs=["vigil-phantom", fingerprint, image_id, part]))
            for part in ("study", "series", "instance")
        )
    )


def build_dataset(image: DicomImage) -> Dataset:
    """Return the complete dataset (with file meta) for ``image``."""
    sop_class = CR_IMAGE_STORAGE if image.modality is Modality.CR else DX_IMAGE_FOR_PROCESSING
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(image.uids.sop)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION

    patient, site = image.patient, image.site
    description = f"CHEST {patient.view}"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = patient.study_date
    ds.InstanceCreationTime = patient.study_time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = image.uids.sop
    for prefix in ("Study", "Series", "Acquisition", "Content"):
        setattr(ds, f"{prefix}Date", patient.study_date)
        setattr(ds, f"{prefix}Time", patient.study_time)
    ds.AccessionNumber = patient.accession
    ds.Modality = image.modality.value
    if image.modality is Modality.DX:
        ds.PresentationIntentType = "FOR PROCESSING"
    ds.Manufacturer = site.manufacturer
    ds.InstitutionName = site.institution
    ds.ReferringPhysicianName = ""
    ds.StationName = site.station
    ds.StudyDescription = description
    ds.SeriesDescription = description
    ds.ManufacturerModelName = site.model
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{patient.age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.SoftwareVersions = SOFTWARE_VERSION
    ds.ViewPosition = patient.view
    ds.StudyInstanceUID = image.uids.study
    ds.SeriesInstanceUID = image.uids.series
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    # Standard display of a frontal chest: along a row towards the patient's left, down a
    # column towards the feet — the same for PA and AP.
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "YES" if image.burned_in_annotation else "NO"
    ds.LossyImageCompression = "00"
    _pixel_module(ds, image)
    if image.modality is Modality.DX:
        _dx_modules(ds, image)
    return ds


def write_dicom(path: Path, image: DicomImage) -> None:
    """Write ``image`` to ``path`` as a DICOM Part 10 file."""
    build_dataset(image).save_as(path, enforce_file_format=True)


def _pixel_module(ds: Dataset, image: DicomImage) -> None:
    """Set the image pixel, spacing and VOI attributes (16 bits allocated, 12 stored)."""
    rows, cols = image.pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = image.photometric.value
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    spacing = f"{image.spacing_mm:.6g}"
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagerPixelSpacing = [spacing, spacing]
    if image.modality is Modality.CR:
        # A DX image "for processing" may not carry a VOI window; it is not meant for display.
        ds.WindowCenter = str(image.window_center)
        ds.WindowWidth = str(image.window_width)
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.add_new(0x7FE00010, "OW", image.pixels.astype("<u2").tobytes())


def _dx_modules(ds: Dataset, image: DicomImage) -> None:
    """Set what the DX Image IOD adds: intensity relationship, detector, anatomy, view."""
    inverse = image.photometric is Photometric.MONOCHROME1
    ds.PresentationLUTShape = "INVERSE" if inverse else "IDENTITY"
    ds.PixelIntensityRelationship = "LOG"
    # -1: higher stored values mean less X-ray reached the detector (bright bone, MONOCHROME2).
    ds.PixelIntensityRelationshipSign = 1 if inverse else -1
    ds.DetectorType = "SCINTILLATOR"
    ds.ImageLaterality = "U"
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []
    ds.AnatomicRegionSequence = [_code(codes.SCT.Chest)]
    view = codes.SCT.PosteroAnterior if image.patient.view == "PA" else codes.SCT.AnteroPosterior
    ds.ViewCodeSequence = [_code(view)]


def _code(code: Code) -> Dataset:
    """Return a code sequence item (value, scheme, meaning)."""
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item
