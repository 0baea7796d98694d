"""DICOM JSON of files as read from disk: the same as pydicom's own, for every kind of file.

``converted_elements`` converts a file's elements without pydicom's item access (the costly
part of indexing an instance); this pins its results to what that access gives.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file

from service.dicom.dicom_json import dataset_to_json
from service.dicom.parse import read_dataset
from tests.factories import make_cr, to_bytes
from tests.test_part10_writer import pydicom_json

TESTDATA = [
    "RG1_UNCI.dcm",  # CR, explicit VR little endian, MONOCHROME1
    "RG1_J2KR.dcm",  # encapsulated pixels
    "CT_small.dcm",  # many numeric and text values
    "MR_small_implicit.dcm",  # implicit VR: VRs from the dictionary
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "OBXXXX1A.dcm",  # US or SS values that depend on Pixel Representation
    "rtplan.dcm",  # nested sequences
    "nested_priv_SQ.dcm",  # private sequences
    "reportsi_with_empty_number_tags.dcm",  # SR, empty numbers
    "liver.dcm",  # multi-frame, functional groups
    "emri_small_big_endian.dcm",
    "empty_charset_LEI.dcm",
]
CHARSETS = ["chrH31.dcm", "chrJapMulti.dcm", "chrRuss.dcm", "chrX1.dcm", "chrSQEncoding.dcm"]


def _same_json(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about some test files' values
        ours = dataset_to_json(read_dataset(path))
        theirs = pydicom_json(pydicom.dcmread(path, defer_size=256 * 1024, force=True))
    assert ours == theirs
    assert ours, "nothing converted"


@pytest.mark.parametrize("name", TESTDATA)
def test_json_of_a_test_file_is_pydicoms(name: str) -> None:
    _same_json(Path(get_testdata_file(name)))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", CHARSETS)
def test_json_of_a_file_in_another_character_set_is_pydicoms(name: str) -> None:
    [path] = get_charset_files(name)
    _same_json(Path(path))


@pytest.mark.parametrize(
    ("charset", "name"),
    [(None, "Muller^Jorg"), ("ISO_IR 100", "Müller^Jörg"), ("ISO_IR 192", "Müller^Jörg=山田")],
)
def test_names_in_a_stored_instance_read_back_as_written(
    tmp_path: Path, charset: str | None, name: str
) -> None:
    ds = make_cr(PatientName=name, StudyDescription=name.replace("^", " "))
    if charset:
        ds.SpecificCharacterSet = charset
    path = tmp_path / "cr.dcm"
    path.write_bytes(to_bytes(ds))
    _same_json(path)
    ours = dataset_to_json(read_dataset(path))
    assert ours["00100010"]["Value"][0]["Alphabetic"] == name.split("=")[0]
    assert ours["00081030"]["Value"] == [name.replace("^", " ")]
