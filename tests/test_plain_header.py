"""The plain-file reader gives what pydicom's reading gives, or steps aside (None).

``parse_plain_file`` reads the common received file (explicit VR little endian, plain values,
native pixels last) without pydicom. For every file here it must either return exactly what
the pydicom path returns (attributes, metadata, and the reason for a refusal) or None.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from service.dicom.failure import InstanceRejected
from service.dicom.parse import ParsedInstance, parse_instance, parse_plain_file, read_dataset
from tests.factories import make_cr, make_sr, pydicom_data_dir, to_bytes

Outcome = ParsedInstance | str | None  # parsed, a refusal's reason, or None (not plain)


def _plain(path: Path, require_image: bool = True) -> Outcome:
    try:
        return parse_plain_file(path, require_image=require_image)
    except InstanceRejected as rejected:
        return rejected.reason


def _pydicom(path: Path, require_image: bool = True) -> Outcome:
    try:
        # With the data set given, parse_instance does not try the plain reader.
        return parse_instance(path, require_image=require_image, dataset=read_dataset(path))
    except InstanceRejected as rejected:
        return rejected.reason


def _check(path: Path, require_image: bool = True) -> bool:
    """Assert the plain reader agrees with pydicom's; return whether it read the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about some test files' values
        plain = _plain(path, require_image)
        if plain is None:
            return False
        assert plain == _pydicom(path, require_image), path.name
    return True


def _write(tmp_path: Path, ds: Dataset, name: str = "x.dcm") -> Path:
    path = tmp_path / name
    path.write_bytes(to_bytes(ds))
    return path


def _files() -> list[Path]:
    """pydicom's own test files and pydicom-data's (without asking the network for more)."""
    own = Path(pydicom.data.__file__).parent / "test_files"
    found = sorted(own.rglob("*")) + sorted(pydicom_data_dir().glob("*.dcm"))
    return [p for p in found if p.is_file() and p.suffix.lower() in (".dcm", "")]


def test_every_test_file_is_read_as_pydicom_reads_it_or_left_to_pydicom() -> None:
    files = _files()
    read = [p.name for p in files if _check(p, require_image=False)]
    assert len(files) > 100
    # Those that are plain (explicit VR little endian, no sequences, pixels last) are read.
    assert {"SC_rgb.dcm", "SC_rgb_16bit.dcm", "emri_small.dcm"} <= set(read)


def test_a_cr_as_modalities_and_the_benchmark_send_it_is_read_plainly(tmp_path: Path) -> None:
    path = _write(tmp_path, make_cr(rows=512, columns=512, ViewPosition="PA"))
    assert _check(path)
    parsed = parse_plain_file(path)
    assert parsed is not None
    assert parsed.instance.rows == 512 and parsed.instance.view_position == "PA"
    assert parsed.patient.patient_name == "Doe^Jane"
    assert parsed.dicom_json["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert "7FE00010" not in parsed.dicom_json


VALUES: list[tuple[str, Any]] = [
    ("ImageType", ["ORIGINAL", "PRIMARY"]),  # CS, several values
    ("PixelSpacing", ["0.139", "1.5e-1"]),  # DS with an exponent
    ("WindowCenter", "-40.5"),  # DS, negative
    ("InstanceNumber", "+7"),  # IS with a sign
    ("SeriesNumber", ""),  # IS, empty
    ("SmallestImagePixelValue", 3),  # US
    ("RescaleIntercept", "0"),
    ("ImageComments", "one\\two, a backslash in text"),  # LT: not split
    ("StudyDescription", "Chest PA"),  # LO with a space inside
    ("OtherPatientNames", ["Doe^Jo", "Roe^Rick"]),  # PN, several
    ("ReferringPhysicianName", ""),  # PN, empty
    ("PatientAge", "042Y"),  # AS
    ("AcquisitionDateTime", "20240115101500.123"),  # DT
    ("FrameTime", "33.3"),
    ("ExposureInuAs", 1200),  # SL
    ("SpacingBetweenSlices", "2"),
    ("ContentTime", "101500.5"),  # TM, fraction
    ("StationName", ""),  # SH, empty
]


@pytest.mark.parametrize(("keyword", "value"), VALUES)
def test_values_of_each_kind_read_as_pydicom_reads_them(
    tmp_path: Path, keyword: str, value: Any
) -> None:
    path = _write(tmp_path, make_cr(**{keyword: value}))
    assert _check(path), f"{keyword} made the file not plain"


def test_binary_numbers_and_private_elements_read_as_pydicom_reads_them(tmp_path: Path) -> None:
    ds = make_cr()
    ds.add_new(0x00181150, "IS", "12")
    ds.add_new(0x00189306, "FD", [0.5, -2.25])  # FD, two values
    ds.add_new(0x00181164, "DS", ["0.2", "0.2"])
    ds.add_new(0x00280106, "US", 0)
    ds.add_new(0x00091000 | 0x10, "LO", "VIGIL")  # a private creator
    ds.add_new(0x00091010, "SS", [-3, 4])  # a private element: signed shorts
    ds.add_new(0x00091011, "FL", 1.25)
    ds.add_new(0x00091012, "UL", 70000)
    assert _check(_write(tmp_path, ds))


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("PatientName", "Müller^Jörg"),  # outside ASCII: pydicom decodes the character set
        ("PatientName", "Yamada^Tarou=山田^太郎"),  # ideographic group
        ("StudyDescription", " leading space"),
        ("ImageType", ["ORIGINAL", "", "AXIAL"]),  # an empty value among several
        ("InstanceNumber", "1.0"),  # not an integer string
        ("PixelSpacing", ["1e400", "1"]),  # out of a double's range
    ],
)
def test_values_it_does_not_read_exactly_are_left_to_pydicom(
    tmp_path: Path, keyword: str, value: Any
) -> None:
    ds = make_cr(**{keyword: value})
    if keyword == "PatientName" and value != "Müller^Jörg":
        ds.SpecificCharacterSet = ["ISO 2022 IR 6", "ISO 2022 IR 87"]
    if value == "Müller^Jörg":
        ds.SpecificCharacterSet = "ISO_IR 100"
    path = _write(tmp_path, ds)
    assert parse_plain_file(path) is None
    assert parse_instance(path).patient.patient_id == "PID-1"  # pydicom reads it


def test_files_it_does_not_read_are_left_to_pydicom(tmp_path: Path) -> None:
    with_sequence = make_cr()
    with_sequence.ReferencedStudySequence = [Dataset()]
    implicit = make_cr()
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    padded = make_cr()
    padded.add_new(0xFFFCFFFC, "OB", b"\0\0")  # trailing padding after the pixels
    for name, ds in [("seq", with_sequence), ("implicit", implicit), ("padded", padded)]:
        path = _write(tmp_path, ds, f"{name}.dcm")
        assert parse_plain_file(path) is None, name
        assert parse_instance(path).instance.rows == 64


def test_truncated_files_are_refused_for_the_same_reasons(tmp_path: Path) -> None:
    whole = to_bytes(make_cr(rows=32, columns=32))
    pixels_at = len(whole) - 32 * 32 * 2
    cuts = [*range(0, pixels_at + 16, 7), pixels_at + 100, len(whole) - 1]
    for cut in cuts:
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(whole[:cut])
        _check(path)
        refusal = _pydicom(path)
        assert isinstance(refusal, str), cut  # every cut file is refused, by one or the other


def test_a_non_image_and_missing_uids_are_refused_for_the_same_reasons(tmp_path: Path) -> None:
    path = _write(tmp_path, make_sr())
    assert _plain(path) == _pydicom(path)
    assert isinstance(_plain(path), str)
    no_series = make_cr()
    del no_series.SeriesInstanceUID
    path = _write(tmp_path, no_series, "no-series.dcm")
    assert _plain(path) == _pydicom(path) == "missing SeriesInstanceUID"
    short = make_cr(rows=64, columns=64)
    short.Rows = 128  # more rows than the pixel data holds
    path = _write(tmp_path, short, "short.dcm")
    reason = _plain(path)
    assert isinstance(reason, str) and reason.startswith("pixel data holds 8192 bytes")
    assert reason == _pydicom(path)


@pytest.mark.parametrize(
    "attributes",
    [
        {"BitsStored": 240},
        {"PhotometricInterpretation": "MONOCHR<ME2"},
        {"PixelRepresentation": 7, "BitsAllocated": 12},
        {"NumberOfFrames": 0},
    ],
    ids=["bits-stored", "photometric", "representation-and-allocated", "no-frames"],
)
def test_an_undecodable_pixel_description_is_refused_for_the_same_reasons(
    tmp_path: Path, attributes: dict[str, Any]
) -> None:
    path = _write(tmp_path, make_cr(**attributes))
    reason = _plain(path)
    assert isinstance(reason, str) and reason.startswith("the pixel data cannot be decoded: ")
    assert reason == _pydicom(path)
