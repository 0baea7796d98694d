"""Small builders for tests: synthetic DICOM instances, STOW bodies, demo files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
BOUNDARY = "vigil-test-boundary"


def pydicom_data_dir() -> Path:
    import data_store

    return Path(data_store.__file__).parent / "data"


def rg1_files() -> dict[str, Path]:
    """The four real chest CR files of pydicom-data, by name (RG1_UNCR, RG1_J2KR, ...)."""
    return {p.stem: p for p in sorted(pydicom_data_dir().glob("RG1_*.dcm"))}


def make_cr(
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_id: str = "PID-1",
    patient_name: str = "Doe^Jane",
    patient_sex: str = "F",
    study_date: str = "20240115",
    modality: str = "CR",
    rows: int = 64,
    columns: int = 64,
    photometric: str = "MONOCHROME2",
    seed: int = 0,
    **attributes: Any,
) -> Dataset:
    """Return a small synthetic CR image (16-bit, 12 bits stored) with the given attributes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = UID(sop_uid) if sop_uid else generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientSex = patient_sex
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def make_sr() -> Dataset:
    """Return a non-image instance (Basic Text SR) with all the UIDs present."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "PID-SR"
    ds.Modality = "SR"
    return ds


def multipart_body(
    parts: list[bytes], boundary: str = BOUNDARY, part_type: str = "application/dicom"
) -> bytes:
    out = bytearray()
    for payload in parts:
        out += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
        out += payload
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def stow_headers(token: str, boundary: str = BOUNDARY) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }


def pydicom_test_file(name: str) -> Path:
    """A file from pydicom's own test data or from pydicom-data."""
    import pydicom.data

    own = Path(pydicom.data.__file__).parent / "test_files" / name
    return own if own.exists() else pydicom_data_dir() / name


def undecodable_jpeg2000() -> bytes:
    """A JPEG 2000 instance whose codestream is garbage after a valid start marker."""
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(pydicom_test_file("MR_small_jp2klossless.dcm"))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(256)) * 8])
    return to_bytes(ds)
