"""Read and check one DICOM Part 10 file: index attributes, metadata, decodable pixels.

Pure: no database, no web framework. Large elements stay on disk (``defer_size``), so a
500 MB instance is checked without reading 500 MB into memory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import iter_pixels, pixel_array
from pydicom.uid import UID

from service.dicom.dicom_json import DicomJson, converted_elements, elements_to_json
from service.dicom.failure import FailureReason, InstanceRejected
from service.dicom.uids import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, is_valid_uid

_DEFER_SIZE = 256 * 1024
_PIXEL_DATA = 0x7FE00010
_FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_Elements = dict[int, DataElement]  # a dataset's elements, converted (converted_elements)


@dataclass(frozen=True)
class PatientAttributes:
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_sex: str
    patient_birth_date: str


@dataclass(frozen=True)
class StudyAttributes:
    study_instance_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    referring_physician_name: str
    patient_age: str


@dataclass(frozen=True)
class SeriesAttributes:
    series_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    manufacturer: str
    manufacturer_model_name: str
    institution_name: str
    station_name: str


@dataclass(frozen=True)
class InstanceAttributes:
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    rows: int | None
    columns: int | None
    number_of_frames: int
    bits_allocated: int | None
    photometric_interpretation: str
    view_position: str
    transfer_syntax_uid: str


@dataclass(frozen=True)
class ParsedInstance:
    patient: PatientAttributes
    study: StudyAttributes
    series: SeriesAttributes
    instance: InstanceAttributes
    dicom_json: DicomJson = field(repr=False)


def parse_instance(
    path: Path, *, require_image: bool = True, dataset: Dataset | None = None
) -> ParsedInstance:
    """Return the index attributes and metadata of a Part 10 file, or raise InstanceRejected.

    ``dataset`` is the file's data set when the caller wrote the file from one in memory (the
    analysis outputs): its values are taken as they are instead of being read back, which for
    a structured report's thousands of nested elements is most of the cost.
    """
    ds = dataset if dataset is not None else read_dataset(path)
    elements = converted_elements(ds)
    sop_class = _text(elements, "SOPClassUID", 64)
    sop_instance = _text(elements, "SOPInstanceUID", 64)
    _check_uids(elements, sop_class, sop_instance)
    transfer_syntax = _transfer_syntax(ds, sop_class, sop_instance)

    has_pixels = _PIXEL_DATA in ds or any(t in ds for t in _FLOAT_PIXEL_DATA)
    if not has_pixels and require_image:
        name = UID(sop_class).name if sop_class else "unknown"
        truncated = "Image Storage" in name
        raise InstanceRejected(
            f"no Pixel Data: the file looks truncated before its pixels ({name})"
            if truncated
            else f"SOP class {sop_class} ({name}) is not an image; Vigil stores images only",
            FailureReason.CANNOT_UNDERSTAND if truncated else FailureReason.SOP_CLASS_NOT_SUPPORTED,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    if has_pixels:
        _check_pixels(ds, elements, path, transfer_syntax, sop_class, sop_instance)

    return ParsedInstance(
        patient=PatientAttributes(
            patient_id=_text(elements, "PatientID", 64),
            issuer_of_patient_id=_text(elements, "IssuerOfPatientID", 64),
            patient_name=_text(elements, "PatientName", 324),
            patient_sex=_text(elements, "PatientSex", 16),
            patient_birth_date=_text(elements, "PatientBirthDate", 8),
        ),
        study=StudyAttributes(
            study_instance_uid=_text(elements, "StudyInstanceUID", 64),
            study_date=_text(elements, "StudyDate", 8),
            study_time=_text(elements, "StudyTime", 16),
            accession_number=_text(elements, "AccessionNumber", 64),
            study_id=_text(elements, "StudyID", 16),
            study_description=_text(elements, "StudyDescription", 64),
            referring_physician_name=_text(elements, "ReferringPhysicianName", 324),
            patient_age=_text(elements, "PatientAge", 4),
        ),
        series=SeriesAttributes(
            series_instance_uid=_text(elements, "SeriesInstanceUID", 64),
            modality=_text(elements, "Modality", 16),
            series_number=_integer(elements, "SeriesNumber"),
            series_description=_text(elements, "SeriesDescription", 64),
            body_part_examined=_text(elements, "BodyPartExamined", 16),
            manufacturer=_text(elements, "Manufacturer", 64),
            manufacturer_model_name=_text(elements, "ManufacturerModelName", 64),
            institution_name=_text(elements, "InstitutionName", 64),
            station_name=_text(elements, "StationName", 16),
        ),
        instance=InstanceAttributes(
            sop_instance_uid=sop_instance,
            sop_class_uid=sop_class,
            instance_number=_integer(elements, "InstanceNumber"),
            rows=_integer(elements, "Rows"),
            columns=_integer(elements, "Columns"),
            number_of_frames=_integer(elements, "NumberOfFrames") or 1,
            bits_allocated=_integer(elements, "BitsAllocated"),
            photometric_interpretation=_text(elements, "PhotometricInterpretation", 16),
            view_position=_text(elements, "ViewPosition", 16),
            transfer_syntax_uid=transfer_syntax,
        ),
        dicom_json=elements_to_json(elements),
    )


def read_dataset(path: Path, *, defer_size: int | None = _DEFER_SIZE) -> Dataset:
    """Return the dataset of a Part 10 file, large values left on disk; raise InstanceRejected."""
    with path.open("rb") as f:
        head = f.read(132)
    has_preamble = head[128:132] == b"DICM"
    # Some writers (pydicom's default, hence dicomweb-client) omit the preamble and start
    # straight with the file meta group (0002,xxxx): accept that, nothing else.
    if not has_preamble and head[:2] != b"\x02\x00":
        raise InstanceRejected(
            "not a DICOM Part 10 file: no 'DICM' marker at byte 128 and no file meta group",
            FailureReason.CANNOT_UNDERSTAND,
        )
    try:
        ds = pydicom.dcmread(path, defer_size=defer_size, force=not has_preamble)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise InstanceRejected(
            f"the file cannot be parsed as DICOM (truncated or malformed): {_short(exc)}",
            FailureReason.CANNOT_UNDERSTAND,
        ) from exc
    deflated = ds.file_meta.get("TransferSyntaxUID") == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    if not deflated and not _ends_where_it_should(ds, os.path.getsize(path)):
        raise InstanceRejected(
            "the file ends in the middle of a data element (truncated)",
            FailureReason.CANNOT_UNDERSTAND,
        )
    return ds


def _ends_where_it_should(ds: Dataset, file_size: int) -> bool:
    """Return False when the file stops inside an element (pydicom stops there silently)."""
    tags = list(ds.keys())
    if not tags:
        meta_length = ds.file_meta.get("FileMetaInformationGroupLength")
        start = 132 if getattr(ds, "preamble", None) is not None else 0
        return meta_length is None or start + 12 + int(meta_length) == file_size
    raw = ds.get_item(tags[-1], keep_deferred=True)
    length, value_tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    if length is None or value_tell is None or length == _UNDEFINED_LENGTH:
        return True  # an undefined-length last element: its own reader checks the end
    value = getattr(raw, "value", None)
    if isinstance(value, bytes) and len(value) < length:
        return False
    return bool(value_tell + length == file_size)


def pixel_fingerprint(path: Path) -> str:
    """Return a hash of what an instance shows: decoded pixels plus its identifying attributes.

    Two files with the same fingerprint are the same instance, perhaps in another transfer
    syntax (RG1_UNCI and RG1_J2KI in pydicom-data are one image, two encodings).
    """
    ds = read_dataset(path, defer_size=None)
    digest = hashlib.sha256()
    for keyword in (
        "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
        "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate",
        "AccessionNumber", "Modality", "Rows", "Columns", "NumberOfFrames",
    ):  # fmt: skip
        digest.update(f"{keyword}={ds.get(keyword, '')}\n".encode())
    if _PIXEL_DATA in ds:
        for frame in iter_pixels(ds):
            digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()


def _check_uids(elements: _Elements, sop_class: str, sop_instance: str) -> None:
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = _text(elements, keyword, 10_000)
        if not value:
            raise InstanceRejected(
                f"missing {keyword}",
                FailureReason.CANNOT_UNDERSTAND,
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
            )
        if not is_valid_uid(value):
            raise InstanceRejected(
                f"{keyword} is not a valid UID (digits and dots, at most 64 characters)",
                FailureReason.CANNOT_UNDERSTAND,
                sop_class_uid=sop_class if is_valid_uid(sop_class) else "",
                sop_instance_uid=sop_instance if is_valid_uid(sop_instance) else "",
            )


def _transfer_syntax(ds: Dataset, sop_class: str, sop_instance: str) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not uid:
        raise InstanceRejected(
            "missing Transfer Syntax UID (0002,0010) in the file meta information",
            FailureReason.CANNOT_UNDERSTAND,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    return uid


def _check_pixels(
    ds: Dataset,
    elements: _Elements,
    path: Path,
    transfer_syntax: str,
    sop_class: str,
    sop_instance: str,
) -> None:
    def reject(reason: str, code: FailureReason = FailureReason.CANNOT_UNDERSTAND) -> None:
        raise InstanceRejected(reason, code, sop_class_uid=sop_class, sop_instance_uid=sop_instance)

    uid = UID(transfer_syntax)
    if _PIXEL_DATA not in ds:
        return  # float pixel data: always native, nothing to decode at ingest
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        reject(
            f"transfer syntax {transfer_syntax} ({uid.name}) is not supported",
            FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
        )
    if not decoder.is_available:
        reject(
            f"no decoder installed for transfer syntax {transfer_syntax} ({uid.name})",
            FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
        )
    for keyword in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel"):
        if _integer(elements, keyword) is None:
            reject(f"missing {keyword}, needed to read the pixel data")
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    length = getattr(raw, "length", None)
    value_tell = getattr(raw, "value_tell", None)
    if not uid.is_encapsulated:
        rows, columns = _integer(elements, "Rows") or 0, _integer(elements, "Columns") or 0
        frames = _integer(elements, "NumberOfFrames") or 1
        samples = _integer(elements, "SamplesPerPixel") or 1
        bits = _integer(elements, "BitsAllocated") or 0
        if _text(elements, "PhotometricInterpretation", 16) == "YBR_FULL_422":
            samples = 2  # two chroma samples shared by each pair of pixels
        expected = (rows * columns * frames * samples * bits + 7) // 8
        if length is None:
            length = len(ds.PixelData)
        if length < expected:
            reject(f"pixel data holds {length} bytes; the image needs {expected} (truncated?)")
        if value_tell is not None and value_tell + length > os.path.getsize(path):
            reject("the file ends inside its pixel data (truncated)")
        return
    frames = _integer(elements, "NumberOfFrames") or 1
    try:
        for index in sorted({0, frames - 1}):
            pixel_array(ds, index=index)
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds; each means "undecodable"
        reject(f"pixel data cannot be decoded ({uid.name}): {_short(exc)}")


def _value(elements: _Elements, keyword: str) -> Any:
    tag = tag_for_keyword(keyword)
    elem = elements.get(tag) if tag is not None else None
    return None if elem is None else elem.value


def _text(elements: _Elements, keyword: str, max_length: int) -> str:
    value: Any = _value(elements, keyword)
    if value is None:
        return ""
    try:
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)
    except Exception:  # noqa: BLE001 - a malformed value counts as absent
        return ""
    return text.strip().replace("\x00", "")[:max_length]


def _integer(elements: _Elements, keyword: str) -> int | None:
    value = _value(elements, keyword)
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
