"""The DICOM objects Vigil writes back (SC, Parametric Maps, Comprehensive SR): valid per
dciodvfy, readable by pydicom and highdicom, in the source's study, and byte-identical when an
analysis is written again."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from service.dicom.parse import parse_instance
from service.results.burn_in import CAPTION_BACKGROUND, burn_in_caption, draw_colour_legend
from service.results.output_dataset import to_part10_bytes
from service.results.output_identity import OutputIdentity, OutputKind
from service.results.overlays import colormap_lut
from service.results.parametric_map import (
    MAX_MAP_SIDE,
    MapQuantity,
    geometry_stand_in,
    map_pixels,
    parametric_map,
)
from service.results.resize import fit_within
from service.results.secondary_capture import caption_lines, secondary_capture
from service.results.segmentation import probability_segmentation
from service.results.structured_report import finding_site, structured_report
from tests.factories import make_cr, rg1_files

SHA = "0123456789abcdef" * 4
CREATED = datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)
FINDINGS = [("pneumothorax", 0.8125), ("pleural effusion", 0.0421875)]
REGIONS = [("right upper lung zone", 0.9375), ("left lung", 0.25), ("grid r0c1", 0.0625)]
SOURCES = ("synthetic", "rg1")
KINDS = tuple(OutputKind)


def identity(analysis_id: str = "analysis-1") -> OutputIdentity:
    return OutputIdentity(
        analysis_id=analysis_id,
        model_name="vigil-demo-chest",
        model_version="0.3.1",
        weights_sha256=SHA,
        created=CREATED,
    )


@cache
def source(name: str) -> Dataset:
    if name == "rg1":  # real chest CR: MONOCHROME1, Pixel Spacing 0\0, no frame of reference
        return pydicom.dcmread(rg1_files()["RG1_UNCR"])
    return make_cr(
        rows=120,
        columns=100,
        PatientOrientation=["L", "F"],
        PixelSpacing=[0.2, 0.25],
        ImagerPixelSpacing=[0.22, 0.275],
        AccessionNumber="ACC-7",
        StudyID="S7",
        ReferringPhysicianName="House^Greg",
        PatientBirthDate="19700101",
    )


def composite(name: str) -> np.ndarray:
    """A stand-in for the caller's overlay: a colour ramp with the legend drawn on."""
    ds = source(name)
    ramp = np.round(np.linspace(0, 255, ds.Columns)).astype(np.intp)
    rgb = colormap_lut("jet")[ramp][np.newaxis].repeat(ds.Rows, axis=0)
    return draw_colour_legend(rgb, "jet", 0.0, 1.0, "Grad-CAM")


def map_values(name: str, quantity: MapQuantity) -> np.ndarray:
    ds = source(name)
    values = np.random.default_rng(7).random((ds.Rows, ds.Columns), dtype=np.float32)
    return values if quantity is MapQuantity.PROBABILITY else values * 3.5 - 0.5


def build(name: str, kind: OutputKind, analysis_id: str = "analysis-1") -> Dataset:
    ds, ident = source(name), identity(analysis_id)
    builders: dict[OutputKind, Callable[[], Dataset]] = {
        OutputKind.SECONDARY_CAPTURE: lambda: secondary_capture(
            ds, composite(name), identity=ident
        ),
        OutputKind.PROBABILITY_MAP: lambda: parametric_map(
            ds, map_values(name, MapQuantity.PROBABILITY), quantity="probability", identity=ident
        ),
        OutputKind.GRADCAM_MAP: lambda: parametric_map(
            ds,
            map_values(name, MapQuantity.GRADCAM),
            quantity=MapQuantity.GRADCAM,
            identity=ident,
        ),
        OutputKind.MEASUREMENT_REPORT: lambda: structured_report(
            ds, findings=FINDINGS, regions=REGIONS, identity=ident
        ),
        OutputKind.PROBABILITY_SEGMENTATION: lambda: probability_segmentation(
            ds, map_values(name, MapQuantity.PROBABILITY), finding="pneumothorax", identity=ident
        ),
    }
    return builders[kind]()


@cache
def written(name: str, kind: OutputKind) -> bytes:
    return to_part10_bytes(build(name, kind))


def read(name: str, kind: OutputKind) -> Dataset:
    return pydicom.dcmread(io.BytesIO(written(name, kind)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", SOURCES)
def test_dciodvfy_reports_no_errors(name: str, kind: OutputKind, tmp_path: Path) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy missing: apt-get install dicom3tools (CI installs it)")
    path = tmp_path / f"{kind}.dcm"
    path.write_bytes(written(name, kind))
    result = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert [line for line in lines if line.startswith("Error")] == []
    assert result.returncode == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", SOURCES)
def test_output_joins_the_source_study_in_a_new_series(name: str, kind: OutputKind) -> None:
    ds, src = read(name, kind), source(name)
    assert ds.StudyInstanceUID == src.StudyInstanceUID
    assert (ds.PatientID, str(ds.PatientName)) == (src.PatientID, str(src.PatientName))
    assert ds.SeriesInstanceUID not in {src.SeriesInstanceUID, src.SOPInstanceUID}
    assert ds.SeriesInstanceUID == identity().series_uid(kind)
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.Manufacturer == "Vigil"
    assert ds.ManufacturerModelName == "vigil-demo-chest"
    assert ds.SoftwareVersions == "0.3.1"
    assert "vigil-demo-chest 0.3.1" in ds.SeriesDescription
    assert src.SOPInstanceUID in referenced_instances(ds)


def test_every_kind_has_its_own_series_and_instance() -> None:
    series = {read("synthetic", kind).SeriesInstanceUID for kind in KINDS}
    instances = {read("synthetic", kind).SOPInstanceUID for kind in KINDS}
    assert len(series) == len(instances) == len(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_rewriting_an_analysis_gives_identical_bytes(kind: OutputKind) -> None:
    first = written("synthetic", kind)
    assert to_part10_bytes(build("synthetic", kind)) == first
    other = pydicom.dcmread(io.BytesIO(to_part10_bytes(build("synthetic", kind, "analysis-2"))))
    assert other.SOPInstanceUID != read("synthetic", kind).SOPInstanceUID


def test_times_are_the_analysis_time_in_the_source_time_zone() -> None:
    # RG1 says its times are at UTC-04:00; 12:30:15 UTC is 08:30:15 there.
    ds = read("rg1", OutputKind.MEASUREMENT_REPORT)
    assert (ds.ContentDate, ds.ContentTime, ds.TimezoneOffsetFromUTC) == (
        "20240501",
        "083015",
        "-0400",
    )
    synthetic = read("synthetic", OutputKind.SECONDARY_CAPTURE)
    assert (synthetic.ContentTime, synthetic.InstanceCreationTime) == ("123015", "123015")
    assert "TimezoneOffsetFromUTC" not in synthetic


@pytest.mark.parametrize("name", SOURCES)
def test_secondary_capture_shows_the_overlay_and_the_burned_in_caption(name: str) -> None:
    ds = read(name, OutputKind.SECONDARY_CAPTURE)
    image = hd.Image.from_dataset(ds)  # highdicom 0.28 has no SCImage.from_dataset
    rgb = composite(name)
    expected = burn_in_caption(rgb, caption_lines(identity()))
    assert np.array_equal(image.get_frame(1, dtype=np.uint8), expected)
    assert np.array_equal(ds.pixel_array[: rgb.shape[0]], rgb)  # nothing drawn over the image
    caption = ds.pixel_array[rgb.shape[0] :]
    assert (caption != CAPTION_BACKGROUND).any(axis=-1).mean() > 0.01  # text is there
    assert (ds.PhotometricInterpretation, ds.BurnedInAnnotation) == ("RGB", "YES")
    assert caption_lines(identity())[0] == "AI RESULT – NOT FOR PRIMARY DIAGNOSIS"
    assert ds.ImageComments.startswith("AI RESULT – NOT FOR PRIMARY DIAGNOSIS")
    assert SHA in ds.ImageComments


def test_secondary_capture_keeps_only_a_usable_pixel_spacing() -> None:
    assert read("synthetic", OutputKind.SECONDARY_CAPTURE).PixelSpacing == [0.2, 0.25]
    assert "PixelSpacing" not in read("rg1", OutputKind.SECONDARY_CAPTURE)  # source has 0\0


@pytest.mark.parametrize("quantity", tuple(MapQuantity))
@pytest.mark.parametrize("name", SOURCES)
def test_parametric_map_gives_back_the_values_at_the_source_pixels(
    name: str, quantity: MapQuantity
) -> None:
    kind = (
        OutputKind.PROBABILITY_MAP
        if quantity is MapQuantity.PROBABILITY
        else (OutputKind.GRADCAM_MAP)
    )
    pm = hd.pm.ParametricMap.from_dataset(read(name, kind))
    values = pm.get_pixels_by_source_instance(
        source_sop_instance_uids=[source(name).SOPInstanceUID], apply_real_world_transform=True
    )
    # Large maps are stored coarser (area average); small ones exactly.
    expected = map_pixels(map_values(name, quantity))
    np.testing.assert_allclose(values[0], expected, rtol=0, atol=1e-6)
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    low, high = (
        (0.0, 1.0)
        if quantity is MapQuantity.PROBABILITY
        else (float(expected.min()), float(expected.max()))
    )
    assert mapping.LUTLabel == quantity.name
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == (
        "1" if quantity is MapQuantity.PROBABILITY else "[arb'U]"
    )
    assert (
        mapping.DoubleFloatRealWorldValueFirstValueMapped,
        mapping.DoubleFloatRealWorldValueLastValueMapped,
    ) == pytest.approx((low, high))
    assert pm.BitsAllocated == 32 and "FloatPixelData" in pm


def test_parametric_map_pixel_spacing_falls_back_when_the_source_has_none() -> None:
    def spacing(name: str) -> list[float]:
        ds = read(name, OutputKind.PROBABILITY_MAP)
        return [
            float(v)
            for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        ]

    assert spacing("synthetic") == [0.2, 0.25]
    # RG1: 0\0 and no Imager Pixel Spacing, so nominal 1 mm; its 1955×1841 map is stored at
    # 512×482, each stored pixel covering 1955/512 × 1841/482 source pixels.
    pm = read("rg1", OutputKind.PROBABILITY_MAP)
    assert (pm.Rows, pm.Columns) == (512, 482)
    assert spacing("rg1") == pytest.approx([1955 / 512, 1841 / 482])
    assert "Pixel spacing from nominal" in read("rg1", OutputKind.PROBABILITY_MAP).ImageComments
    no_patient_spacing = make_cr(PixelSpacing=[0, 0], ImagerPixelSpacing=[0.15, 0.15])
    assert geometry_stand_in(no_patient_spacing, (0.15, 0.15)).PixelSpacing == [0.15, 0.15]


def test_maps_of_one_image_share_a_frame_of_reference_and_follow_patient_orientation() -> None:
    probability = read("synthetic", OutputKind.PROBABILITY_MAP)
    gradcam = read("synthetic", OutputKind.GRADCAM_MAP)
    assert probability.FrameOfReferenceUID == gradcam.FrameOfReferenceUID
    orientation = probability.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    # Patient Orientation L\F: rows run to the patient's left, columns to the feet.
    assert [float(v) for v in orientation.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
    other_image = read("rg1", OutputKind.PROBABILITY_MAP)
    assert probability.FrameOfReferenceUID != other_image.FrameOfReferenceUID


@pytest.mark.parametrize("name", SOURCES)
def test_measurement_report_holds_probabilities_model_and_source(name: str) -> None:
    ds = read(name, OutputKind.MEASUREMENT_REPORT)
    sr = hd.sr.ComprehensiveSR.from_dataset(ds)
    report = hd.sr.MeasurementReport.from_sequence(sr.content)
    groups = report.get_image_measurement_groups()
    found = {}
    for group in groups:
        assert group.finding_type is not None
        found[group.tracking_identifier] = (group.finding_type.meaning, group.get_measurements()[0])
    expected = {f"image: {n}": (n, p) for n, p in FINDINGS} | {
        f"region: {r}": ("pneumothorax", p) for r, p in REGIONS
    }
    assert set(found) == set(expected)
    for label, (finding, probability) in expected.items():
        meaning, measurement = found[label]
        assert meaning == finding
        assert measurement.name == codes.DCM.Probability
        assert measurement.unit == codes.UCUM.NoUnits
        assert float(measurement.value) == pytest.approx(probability)
    for group in groups:
        assert [image.referenced_sop_instance_uid for image in group.source_images] == [
            source(name).SOPInstanceUID
        ]
    sites = {g.tracking_identifier: g.finding_sites for g in groups}
    upper_right = sites["region: right upper lung zone"][0]
    assert upper_right.value == codes.SCT.UpperZoneOfLung
    assert upper_right.laterality == codes.SCT.Right
    assert sites["region: grid r0c1"] == []
    texts = text_values(sr.content[0])
    assert texts["Algorithm Name"] == {"vigil-demo-chest"}
    assert texts["Algorithm Version"] == {"0.3.1"}
    assert texts["Algorithm Parameters"] == {f"weights sha256 {SHA}"}
    assert texts["Device Observer Name"] == {"Vigil"}
    assert (ds.CompletionFlag, ds.VerificationFlag) == ("COMPLETE", "UNVERIFIED")


@pytest.mark.parametrize("name", SOURCES)
def test_segmentation_gives_back_the_probabilities_to_within_one_step(name: str) -> None:
    seg = hd.seg.Segmentation.from_dataset(read(name, OutputKind.PROBABILITY_SEGMENTATION))
    assert (seg.SegmentationType, seg.SegmentationFractionalType) == ("FRACTIONAL", "PROBABILITY")
    values = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[source(name).SOPInstanceUID], rescale_fractional=True
    )
    expected = map_values(name, MapQuantity.PROBABILITY)
    np.testing.assert_allclose(values[0, ..., 0], expected, rtol=0, atol=0.5 / 255 + 1e-6)
    segment = seg.SegmentSequence[0]
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "pneumothorax"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "0.3.1"


def test_non_latin1_text_survives_in_utf8() -> None:
    # A source read from a Latin-1 file; the outputs are UTF-8 (the disclaimer needs it).
    original = make_cr(patient_name="Müller^Jürgen", SpecificCharacterSet="ISO_IR 100")
    latin1 = pydicom.dcmread(io.BytesIO(to_part10_bytes(original)))
    report = structured_report(latin1, findings=FINDINGS, identity=identity())
    back = pydicom.dcmread(io.BytesIO(to_part10_bytes(report)))
    assert (back.SpecificCharacterSet, str(back.PatientName)) == ("ISO_IR 192", "Müller^Jürgen")


def test_finding_sites_are_coded_for_lung_zones_only() -> None:
    site = finding_site("Left Lower Zone")
    assert site is not None
    assert (site.value, site.laterality) == (codes.SCT.LowerZoneOfLung, codes.SCT.Left)
    assert finding_site("right lung") is not None
    assert finding_site("r2c3") is None
    assert finding_site("upper zone") is None


def test_bad_inputs_are_refused_with_the_reason() -> None:
    ds = source("synthetic")
    with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
        parametric_map(
            ds, np.full((120, 100), 1.5, np.float32), quantity="probability", identity=identity()
        )
    with pytest.raises(ValueError, match="the source image is"):
        parametric_map(ds, np.zeros((10, 10), np.float32), quantity="gradcam", identity=identity())
    with pytest.raises(ValueError, match="NaN"):
        parametric_map(
            ds, np.full((120, 100), np.nan, np.float32), quantity="gradcam", identity=identity()
        )
    with pytest.raises(ValueError, match="not in"):
        structured_report(ds, findings=[("x", 1.2)], identity=identity())
    with pytest.raises(ValueError, match="region names repeat"):
        structured_report(
            ds, findings=FINDINGS, regions=[("r1", 0.1), ("r1", 0.2)], identity=identity()
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        OutputIdentity("a", "m", "1", SHA, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="sha256"):
        OutputIdentity("a", "m", "1", "abc", CREATED)
    with pytest.raises(ValueError, match="uint8"):
        secondary_capture(ds, np.zeros((120, 100, 3), np.float32), identity=identity())


def test_flat_gradcam_still_gets_a_usable_window() -> None:
    pm = parametric_map(
        source("synthetic"),
        np.zeros((120, 100), np.float32),
        quantity="gradcam",
        identity=identity(),
    )
    voi = pm.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    assert float(voi.WindowWidth) > 0


def test_caption_is_added_below_and_fits_narrow_images() -> None:
    rgb = np.full((40, 64, 3), 90, np.uint8)
    out = burn_in_caption(rgb, ["AI RESULT – NOT FOR PRIMARY DIAGNOSIS", "model 1.0"])
    assert out.shape[0] > 40 and out.shape[1:] == (64, 3)
    assert np.array_equal(out[:40], rgb)
    assert (out[40:] != CAPTION_BACKGROUND).any()


def test_colour_legend_shows_the_colormap_ends_in_the_top_right_corner() -> None:
    rgb = np.full((200, 300, 3), 128, np.uint8)
    out = draw_colour_legend(rgb, "jet", 0.0, 1.0, "P(finding)")
    corner = out[:80, 200:].reshape(-1, 3)
    for end in (colormap_lut("jet")[255], colormap_lut("jet")[0]):
        assert (np.abs(corner.astype(int) - end).sum(axis=1) <= 6).any()
    assert np.array_equal(out[120:, :150], rgb[120:, :150])  # the rest is untouched
    with pytest.raises(ValueError, match="unknown colormap"):
        draw_colour_legend(rgb, "rainbow-ish", 0.0, 1.0, "x")


def referenced_instances(ds: Dataset) -> set[str]:
    """Return every Referenced SOP Instance UID anywhere in the dataset."""
    return {
        str(element.value)
        for element in ds.iterall()
        if element.keyword == "ReferencedSOPInstanceUID"
    }


def text_values(item: Dataset) -> dict[str, set[str]]:
    """Return the TEXT and UIDREF content items under an SR item, by concept name meaning."""
    out: dict[str, set[str]] = {}
    for child in item.get("ContentSequence", []):
        meaning = child.ConceptNameCodeSequence[0].CodeMeaning
        if child.ValueType == "TEXT":
            out.setdefault(meaning, set()).add(child.TextValue)
        for key, values in text_values(child).items():
            out.setdefault(key, set()).update(values)
    return out


@pytest.mark.parametrize("name", SOURCES)
def test_a_map_at_the_working_size_gives_the_same_parametric_map(name: str) -> None:
    # The pipeline hands over maps already shrunk (long side 512): same field, same result.
    values = map_values(name, MapQuantity.PROBABILITY)
    small = fit_within(values, MAX_MAP_SIDE)
    full_size = parametric_map(source(name), values, quantity="probability", identity=identity())
    shrunk = parametric_map(source(name), small, quantity="probability", identity=identity())
    assert to_part10_bytes(shrunk) == to_part10_bytes(full_size)
    with pytest.raises(ValueError, match="scaled-down copy"):
        parametric_map(source(name), small[:, :-3], quantity="probability", identity=identity())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", SOURCES)
def test_metadata_from_the_data_set_in_memory_equals_the_file_read_back(
    name: str, kind: OutputKind, tmp_path: Path
) -> None:
    # The analysis files its outputs with the metadata of the data sets it wrote, unread.
    path = tmp_path / "out.dcm"
    path.write_bytes(written(name, kind))
    in_memory = parse_instance(path, require_image=False, dataset=build(name, kind))
    read_back = parse_instance(path, require_image=False)
    assert in_memory == read_back
    assert in_memory.dicom_json == read_back.dicom_json
