"""The fast Part 10 writer and DICOM JSON of data sets in memory give pydicom's own results,
for every output kind and for the values they hand back to pydicom."""

from __future__ import annotations

import io
from datetime import date

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from service.dicom import dicom_json
from service.results.output_identity import OutputKind
from service.results.part10_writer import to_part10
from tests.test_dicom_outputs import KINDS, SOURCES, build


def pydicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def pydicom_json(ds: Dataset) -> dict[str, object]:
    """The DICOM JSON as pydicom's ``to_json_dict`` gives it, bulk data left out."""
    out: dict[str, object] = {}
    tags = ds.keys()
    for tag in tags:
        if tag.group == 2 or dicom_json._is_bulk(tag, ds.get_item(tag, keep_deferred=True)):
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            items = [pydicom_json(item) for item in elem.value]
            out[f"{tag:08X}"] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        else:
            out[f"{tag:08X}"] = elem.to_json_dict(None, dicom_json.BULK_DATA_THRESHOLD)
    return out


def varied(charset: str | None = None, transfer_syntax: UID = ExplicitVRLittleEndian) -> Dataset:
    """A data set with a value of most kinds, some the writer hands back to pydicom."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Müller^Jörg"  # PN: pydicom's writer
    ds.PatientID = "odd"  # LO, odd length: padded
    ds.StudyDate = "20240501"
    ds.ContentDate = date(2024, 5, 1)  # DA as a date: pydicom's writer
    ds.StudyTime = "123015.5"
    ds.ImageType = ["DERIVED", "SECONDARY"]  # CS, two values
    ds.PixelSpacing = [0.125, 0.2]  # DS, two values
    ds.SliceThickness = "1.50"  # DS kept as written
    ds.InstanceNumber = 7  # IS
    ds.Rows = 2  # US
    ds.ReferencedFrameNumber = [1, 2]  # IS, two values
    ds.FrameIncrementPointer = 0x00181063  # AT: pydicom's writer
    ds.RealWorldValueSlope = 0.5  # FD
    ds.LargestMonochromePixelValue = 4095  # US
    ds.StudyDescription = ""  # empty LO
    ds.InstitutionName = None  # empty, no value at all
    ds.ImageComments = "Ünïcode text"  # LT in the data set's character set
    ds.PixelData = b"\x01\x02\x03"  # OB, odd length: padded
    ds["PixelData"].VR = "OB"
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "121071", "DCM", "Finding"
    ds.ConceptNameCodeSequence = [item]
    ds.ContentSequence = []  # empty sequence
    return ds


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", SOURCES)
def test_output_bytes_are_pydicoms(name: str, kind: OutputKind) -> None:
    ds = build(name, kind)
    assert to_part10(ds) == pydicom_bytes(ds)


@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192"])
def test_values_of_every_kind_are_written_as_pydicom_writes_them(charset: str | None) -> None:
    ds = varied(charset)
    if charset is None:
        ds.PatientName = "Muller^Jorg"  # the default repertoire holds no umlauts
        ds.ImageComments = "plain text"
    assert to_part10(ds) == pydicom_bytes(ds)
    back = pydicom.dcmread(io.BytesIO(to_part10(ds)))
    assert back.ReferencedFrameNumber == [1, 2] and back.PixelSpacing == [0.125, 0.2]


@pytest.mark.parametrize(
    "ds",
    [
        varied("ISO 2022 IR 100"),  # escape-coded character sets
        varied("ISO_IR 192", ImplicitVRLittleEndian),  # another transfer syntax
    ],
    ids=["escape-coded", "implicit-vr"],
)
def test_what_it_does_not_handle_is_written_by_pydicom(ds: Dataset) -> None:
    assert to_part10(ds) == pydicom_bytes(ds)


def test_text_outside_the_character_set_gets_pydicoms_handling() -> None:
    ds = varied("ISO_IR 100")
    ds.ImageComments = "Ελληνικά"  # not in Latin-1: pydicom warns and replaces
    with pytest.warns(UserWarning):
        expected = pydicom_bytes(ds)
    with pytest.warns(UserWarning):
        assert to_part10(ds) == expected


def test_a_file_meta_element_in_the_data_set_is_refused() -> None:
    ds = varied("ISO_IR 192")
    ds.add_new(0x00020010, "UI", ExplicitVRLittleEndian)
    with pytest.raises(ValueError, match=r"File Meta|file meta"):
        to_part10(ds)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", SOURCES)
def test_output_json_is_pydicoms(name: str, kind: OutputKind) -> None:
    ds = build(name, kind)
    assert dicom_json.dataset_to_json(ds) == pydicom_json(ds)


def test_json_of_values_of_every_kind_is_pydicoms() -> None:
    ds = varied("ISO_IR 192")
    assert dicom_json.dataset_to_json(ds) == pydicom_json(ds)
    plain = dicom_json.dataset_to_json(ds)
    assert plain["00280030"] == {"vr": "DS", "Value": [0.125, 0.2]}
    assert plain["00081160"] == {"vr": "IS", "Value": [1, 2]}
    assert plain["00081030"] == {"vr": "LO"}  # empty: no Value
    assert "7FE00010" not in plain  # pixels are bulk data


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_do_not_need_pydicoms_dataset_writer(
    kind: OutputKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The equality above would hold trivially if every output fell back to pydicom.
    ds = build("rg1", kind)
    expected = pydicom_bytes(ds)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("pydicom.dcmwrite was called")

    monkeypatch.setattr(pydicom, "dcmwrite", refuse)
    assert to_part10(ds) == expected
