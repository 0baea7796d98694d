"""Read and check one DICOM Part 10 file: index attributes, metadata, decodable pixels.

Pure: no database, no web framework. Large elements stay on disk (``defer_size``), so a
500 MB instance is checked without reading 500 MB into memory.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import iter_pixels, pixel_array
from pydicom.uid import UID

from service.dicom.dicom_json import DicomJson, converted_elements, elements_to_json
from service.dicom.failure import FailureReason, InstanceRejected
from service.dicom.plain_header import read_plain_header
from service.dicom.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    MEDIA_STORAGE_DIRECTORY_STORAGE,
    is_valid_uid,
)

_DEFER_SIZE = 256 * 1024
_PIXEL_DATA = 0x7FE00010
_FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_Values = Mapping[int, Any]  # tag -> an element's value (as converted_elements gives it)


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
    path: Path,
    *,
    require_image: bool = True,
    dataset: Dataset | None = None,
    known: tuple[bytes, int] | None = None,
) -> ParsedInstance:
    """Return the index attributes and metadata of a Part 10 file, or raise InstanceRejected.

    ``dataset`` is the file's data set when the caller wrote the file from one in memory (the
    analysis outputs): its values are taken as they are instead of being read back, which for
    a structured report's thousands of nested elements is most of the cost. ``known``: the
    file's head and size in memory, for a plain file (``parse_plain_file``).
    """
    if dataset is None:
        plain = parse_plain_file(path, require_image=require_image, known=known)
        if plain is not None:
            return plain
    ds = dataset if dataset is not None else read_dataset(path)
    _check_not_a_dicomdir(ds)
    elements = converted_elements(ds)
    values = {tag: elem.value for tag, elem in elements.items()}
    sop_class, sop_instance = _sop(values)
    transfer_syntax = _transfer_syntax(ds, sop_class, sop_instance)
    has_pixels = _PIXEL_DATA in ds or any(t in ds for t in _FLOAT_PIXEL_DATA)
    _check_image(has_pixels, require_image, sop_class, sop_instance)
    if has_pixels:
        _check_pixels(ds, values, path, transfer_syntax, sop_class, sop_instance)
    return _parsed(values, elements_to_json(elements), transfer_syntax)


def parse_plain_file(
    path: Path, *, require_image: bool = True, known: tuple[bytes, int] | None = None
) -> ParsedInstance | None:
    """Return what ``parse_instance`` returns for a plain file (see ``plain_header``) read
    without pydicom, or raise InstanceRejected; None for any other file (read it with
    ``parse_instance``). ``known``: its head and size in memory (``read_plain_header``)."""
    header = read_plain_header(path, known)
    if header is None:
        return None
    values = header.values
    sop_class, sop_instance = _sop(values)
    has_pixels = header.pixel_data_length is not None
    _check_image(has_pixels, require_image, sop_class, sop_instance)
    if header.pixel_data_length is not None:
        problem = _native_pixels_problem(values, header.pixel_data_length)
        if problem:
            raise InstanceRejected(
                problem,
                FailureReason.CANNOT_UNDERSTAND,
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
            )
    return _parsed(values, header.dicom_json, header.transfer_syntax)


def _check_not_a_dicomdir(ds: Dataset) -> None:
    """Refuse a DICOMDIR by name: it has none of an instance's UIDs, and "missing
    StudyInstanceUID" would not tell its sender what it is."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY_STORAGE:
        raise InstanceRejected(
            "a DICOMDIR: the index of a medium's files (CD, DVD, USB), not an instance; "
            "the instances it lists are the medium's other files",
            FailureReason.SOP_CLASS_NOT_SUPPORTED,
            sop_class_uid=MEDIA_STORAGE_DIRECTORY_STORAGE,
        )


def _sop(values: _Values) -> tuple[str, str]:
    """Return the SOP class and instance UIDs, having checked the four UIDs an instance needs."""
    sop_class = _text(values, "SOPClassUID", 64)
    sop_instance = _text(values, "SOPInstanceUID", 64)
    _check_uids(values, sop_class, sop_instance)
    return sop_class, sop_instance


def _check_image(has_pixels: bool, require_image: bool, sop_class: str, sop_instance: str) -> None:
    if has_pixels or not require_image:
        return
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


def _parsed(values: _Values, dicom_json: DicomJson, transfer_syntax: str) -> ParsedInstance:
    return ParsedInstance(
        patient=PatientAttributes(
            patient_id=_text(values, "PatientID", 64),
            issuer_of_patient_id=_text(values, "IssuerOfPatientID", 64),
            patient_name=_text(values, "PatientName", 324),
            patient_sex=_text(values, "PatientSex", 16),
            patient_birth_date=_text(values, "PatientBirthDate", 8),
        ),
        study=StudyAttributes(
            study_instance_uid=_text(values, "StudyInstanceUID", 64),
            study_date=_text(values, "StudyDate", 8),
            study_time=_text(values, "StudyTime", 16),
            accession_number=_text(values, "AccessionNumber", 64),
            study_id=_text(values, "StudyID", 16),
            study_description=_text(values, "StudyDescription", 64),
            referring_physician_name=_text(values, "ReferringPhysicianName", 324),
            patient_age=_text(values, "PatientAge", 4),
        ),
        series=SeriesAttributes(
            series_instance_uid=_text(values, "SeriesInstanceUID", 64),
            modality=_text(values, "Modality", 16),
            series_number=_integer(values, "SeriesNumber"),
            series_description=_text(values, "SeriesDescription", 64),
            body_part_examined=_text(values, "BodyPartExamined", 16),
            manufacturer=_text(values, "Manufacturer", 64),
            manufacturer_model_name=_text(values, "ManufacturerModelName", 64),
            institution_name=_text(values, "InstitutionName", 64),
            station_name=_text(values, "StationName", 16),
        ),
        instance=InstanceAttributes(
            sop_instance_uid=_text(values, "SOPInstanceUID", 64),
            sop_class_uid=_text(values, "SOPClassUID", 64),
            instance_number=_integer(values, "InstanceNumber"),
            rows=_integer(values, "Rows"),
            columns=_integer(values, "Columns"),
            number_of_frames=_integer(values, "NumberOfFrames") or 1,
            bits_allocated=_integer(values, "BitsAllocated"),
            photometric_interpretation=_text(values, "PhotometricInterpretation", 16),
            view_position=_text(values, "ViewPosition", 16),
            transfer_syntax_uid=transfer_syntax,
        ),
        dicom_json=dicom_json,
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
    except (
        InvalidDicomError,
        BytesLengthException,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        struct.error,
        NotImplementedError,  # a value representation pydicom does not know
    ) as exc:
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
        try:
            meta_length = ds.file_meta.get("FileMetaInformationGroupLength")
        except (BytesLengthException, ValueError):
            return False  # cut inside the group length itself
        start = 132 if getattr(ds, "preamble", None) is not None else 0
        if meta_length is None:
            return True
        if not isinstance(meta_length, int):
            return False  # cut inside the group length itself
        return start + 12 + meta_length == file_size
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
    Raises InstanceRejected when the file's attributes or pixels cannot be read (what it
    shows is then unknown).
    """
    ds = read_dataset(path, defer_size=None)
    digest = hashlib.sha256()
    try:
        for keyword in (
            "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
            "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate",
            "AccessionNumber", "Modality", "Rows", "Columns", "NumberOfFrames",
        ):  # fmt: skip
            digest.update(f"{keyword}={ds.get(keyword, '')}\n".encode())
        if _PIXEL_DATA in ds:
            for frame in iter_pixels(ds):
                digest.update(np.ascontiguousarray(frame).tobytes())
    except Exception as exc:  # pydicom raises many kinds on malformed values (re-raised)
        raise InstanceRejected(
            f"the file's attributes or pixels cannot be read: {_short(exc)}",
            FailureReason.CANNOT_UNDERSTAND,
        ) from exc
    return digest.hexdigest()


def _check_uids(values: _Values, sop_class: str, sop_instance: str) -> None:
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = _text(values, keyword, 10_000)
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
    values: _Values,
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
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    length = getattr(raw, "length", None)
    value_tell = getattr(raw, "value_tell", None)
    if not uid.is_encapsulated:
        problem = _native_pixels_problem(values, length or len(ds.PixelData))
        if problem:
            reject(problem)
        if (
            value_tell is not None
            and length is not None
            and (value_tell + length > os.path.getsize(path))
        ):
            reject("the file ends inside its pixel data (truncated)")
        return
    problem = _missing_pixel_description(values)
    if problem:
        reject(problem)
    frames = _integer(values, "NumberOfFrames") or 1
    try:
        for index in sorted({0, frames - 1}):
            pixel_array(ds, index=index)
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds; each means "undecodable"
        reject(f"pixel data cannot be decoded ({uid.name}): {_short(exc)}")


# PS3.3 C.7.6.3.1.2, retired ones included (pydicom decodes them).
_PHOTOMETRIC_INTERPRETATIONS = frozenset(
    {
        "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422",
        "YBR_ICT", "YBR_RCT", "HSV", "ARGB", "CMYK", "YBR_PARTIAL_422", "YBR_PARTIAL_420",
    }
)  # fmt: skip


def _missing_pixel_description(values: _Values) -> str:
    for keyword in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel"):
        if _integer(values, keyword) is None:
            return f"missing {keyword}, needed to read the pixel data"
    return ""


def _invalid_pixel_description(values: _Values) -> str:
    """Return why the pixel description cannot describe decodable pixels, or "" (the checks
    pydicom's decoders make: a file they refuse could be stored but never shown)."""
    allocated = _integer(values, "BitsAllocated") or 0
    stored = _integer(values, "BitsStored")
    photometric = _text(values, "PhotometricInterpretation", 64)
    samples = _integer(values, "SamplesPerPixel")
    frames = _integer(values, "NumberOfFrames")
    problems = {
        "Bits Allocated must be 1 or a multiple of 8 up to 64": not 1 <= allocated <= 64
        or (allocated != 1 and allocated % 8 != 0),
        "Bits Stored must be 1 to Bits Allocated": stored is None or not 1 <= stored <= allocated,
        "Rows and Columns must be 1 to 65535": not all(
            1 <= (_integer(values, k) or 0) <= 0xFFFF for k in ("Rows", "Columns")
        ),
        "Number of Frames must be at least 1": frames is not None and frames < 1,
        f'Photometric Interpretation "{photometric}" is not one DICOM defines': photometric
        not in _PHOTOMETRIC_INTERPRETATIONS,
        "Pixel Representation must be 0 or 1": _integer(values, "PixelRepresentation")
        not in (0, 1),
        "Samples per Pixel must be 1 or 3": samples not in (1, 3),
        "Planar Configuration must be 0 or 1": samples == 3
        and _integer(values, "PlanarConfiguration") not in (0, 1),
    }
    found = [problem for problem, present in problems.items() if present]
    return f"the pixel data cannot be decoded: {'; '.join(found)}" if found else ""


def _native_pixels_problem(values: _Values, length: int) -> str:
    """Return why native pixel data of ``length`` bytes cannot be read, or ""."""
    missing = _missing_pixel_description(values) or _invalid_pixel_description(values)
    if missing:
        return missing
    rows, columns = _integer(values, "Rows") or 0, _integer(values, "Columns") or 0
    frames = _integer(values, "NumberOfFrames") or 1
    samples = _integer(values, "SamplesPerPixel") or 1
    bits = _integer(values, "BitsAllocated") or 0
    if _text(values, "PhotometricInterpretation", 16) == "YBR_FULL_422":
        samples = 2  # two chroma samples shared by each pair of pixels
    expected = (rows * columns * frames * samples * bits + 7) // 8
    if length < expected:
        return f"pixel data holds {length} bytes; the image needs {expected} (truncated?)"
    return ""


def _value(values: _Values, keyword: str) -> Any:
    tag = tag_for_keyword(keyword)
    return None if tag is None else values.get(tag)


def _text(values: _Values, keyword: str, max_length: int) -> str:
    value: Any = _value(values, keyword)
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


def _integer(values: _Values, keyword: str) -> int | None:
    value = _value(values, keyword)
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
