"""WADO-RS: instances byte for byte, metadata, rendered images, frames, errors, access log."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from sqlalchemy import select

from service.auth.roles import Role
from service.dicom import render
from service.orm import AccessLogEntry
from service.runtime import Runtime
from tests.factories import make_cr, multipart_body, rg1_files, stow_headers, to_bytes

ELE = "1.2.840.10008.1.2.1"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
DICOM_ACCEPT = 'multipart/related; type="application/dicom"'

Get = Callable[..., Any]
Store = Callable[[list[bytes]], None]
RG1 = {name: pydicom.dcmread(path, stop_before_pixels=True) for name, path in rg1_files().items()}
STUDY = RG1["RG1_UNCR"].StudyInstanceUID
SERIES = RG1["RG1_UNCR"].SeriesInstanceUID


def instance_url(name: str) -> str:
    return f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{RG1[name].SOPInstanceUID}"


def url_of(ds: Dataset) -> str:
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def auth(token: str, accept: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if accept is not None:
        headers["Accept"] = accept
    return headers


def stow(client: TestClient, token: str, payloads: list[bytes]) -> None:
    response = client.post(
        "/dicomweb/studies", content=multipart_body(payloads), headers=stow_headers(token)
    )
    assert response.status_code == 200, response.text


def parse_multipart(response) -> list[tuple[str, bytes]]:
    """Return (Content-Type, payload) of each part; written apart from the server's writer."""
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related")
    boundary = content_type.split("boundary=")[1].split(";")[0].strip().strip('"')
    delimiter = b"--" + boundary.encode()
    body = response.content
    assert body.endswith(delimiter + b"--\r\n")
    parts = []
    for chunk in body.split(delimiter)[1:-1]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n")
        head, _, payload = chunk[2:-2].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n"))
        assert int(headers["Content-Length"]) == len(payload)
        parts.append((headers["Content-Type"], payload))
    return parts


def sop_uid(payload: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(payload), stop_before_pixels=True).SOPInstanceUID)


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


def access_rows(runtime: Runtime, action: str) -> list[AccessLogEntry]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(AccessLogEntry).where(AccessLogEntry.action == action)))


@pytest.fixture
def get(client: TestClient, integration_token: str) -> Get:
    """GET as the integration role, with an optional Accept header."""
    return lambda url, accept=None: client.get(url, headers=auth(integration_token, accept))


@pytest.fixture
def store(client: TestClient, integration_token: str) -> Store:
    """STOW-RS files (as bytes) as the integration role."""
    return lambda payloads: stow(client, integration_token, payloads)


@pytest.fixture
def rg1(store: Store) -> dict[str, Path]:
    """The four RG1 files stored in one request (so RG1_J2KI is stored before RG1_UNCI)."""
    files = rg1_files()
    store([p.read_bytes() for p in files.values()])
    return files


@pytest.fixture
def uncr(store: Store) -> Path:
    """Only RG1_UNCR stored: enough for the tests of errors and parameters."""
    path = rg1_files()["RG1_UNCR"]
    store([path.read_bytes()])
    return path


# --- instances -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, stored",
    [
        ("RG1_UNCR", "RG1_UNCR"),
        ("RG1_J2KR", "RG1_J2KR"),
        ("RG1_J2KI", "RG1_J2KI"),
        # RG1_UNCI is RG1_J2KI's SOP instance, sent after it: the archive kept RG1_J2KI.
        ("RG1_UNCI", "RG1_J2KI"),
    ],
)
def test_instance_comes_back_byte_for_byte(
    get: Get, rg1: dict[str, Path], name: str, stored: str
) -> None:
    response = get(instance_url(name))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(f"{DICOM_ACCEPT}; boundary=")
    [(content_type, payload)] = parse_multipart(response)
    assert payload == rg1[stored].read_bytes()
    stored_ts = RG1[stored].file_meta.TransferSyntaxUID
    assert content_type == f"application/dicom; transfer-syntax={stored_ts}"


@pytest.mark.parametrize("level", ["study", "series"])
def test_study_and_series_return_every_stored_file_unchanged(
    get: Get, rg1: dict[str, Path], level: str
) -> None:
    url = f"/dicomweb/studies/{STUDY}" + (f"/series/{SERIES}" if level == "series" else "")
    response = get(url, f"{DICOM_ACCEPT}; transfer-syntax=*")
    assert response.status_code == 200, response.text
    by_uid = {sop_uid(payload): payload for _, payload in parse_multipart(response)}
    assert len(by_uid) == 3
    for name in ["RG1_UNCR", "RG1_J2KR", "RG1_J2KI"]:
        assert by_uid[RG1[name].SOPInstanceUID] == rg1[name].read_bytes()


def test_explicit_little_endian_request_decompresses_only_the_compressed_files(
    get: Get, rg1: dict[str, Path]
) -> None:
    response = get(f"/dicomweb/studies/{STUDY}", f"{DICOM_ACCEPT}; transfer-syntax={ELE}")
    assert response.status_code == 200, response.text
    parts = parse_multipart(response)
    assert {content_type for content_type, _ in parts} == {
        f"application/dicom; transfer-syntax={ELE}"
    }
    by_uid = {sop_uid(payload): payload for _, payload in parts}
    assert by_uid[RG1["RG1_UNCR"].SOPInstanceUID] == rg1["RG1_UNCR"].read_bytes()
    uncompressed = pydicom.dcmread(rg1["RG1_UNCR"]).pixel_array
    for name in ["RG1_J2KR", "RG1_J2KI"]:
        ds = pydicom.dcmread(io.BytesIO(by_uid[RG1[name].SOPInstanceUID]))
        assert ds.file_meta.TransferSyntaxUID == ELE  # and the SOP Instance UID is kept
        assert np.array_equal(ds.pixel_array, pydicom.dcmread(rg1[name]).pixel_array)
    # JPEG 2000 lossless: the same pixels as the uncompressed original.
    lossless = pydicom.dcmread(io.BytesIO(by_uid[RG1["RG1_J2KR"].SOPInstanceUID]))
    assert np.array_equal(lossless.pixel_array, uncompressed)


def test_implicit_vr_file_is_re_encoded_on_request(get: Get, store: Store) -> None:
    ds = make_cr(rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    store([to_bytes(ds)])
    url = url_of(ds)
    [(_, stored)] = parse_multipart(get(url))
    assert stored == to_bytes(ds)
    accept = f"{DICOM_ACCEPT}; transfer-syntax={ELE}"
    [(_, payload)] = parse_multipart(get(url, accept))
    explicit = pydicom.dcmread(io.BytesIO(payload))
    assert explicit.file_meta.TransferSyntaxUID == ELE
    assert explicit.PatientID == ds.PatientID
    assert np.array_equal(explicit.pixel_array, ds.pixel_array)


def test_stored_transfer_syntax_named_explicitly_is_sent_as_stored(
    get: Get, rg1: dict[str, Path]
) -> None:
    accept = f"{DICOM_ACCEPT}; transfer-syntax={J2K_LOSSLESS}"
    response = get(instance_url("RG1_J2KR"), accept)
    [(_, payload)] = parse_multipart(response)
    assert payload == rg1["RG1_J2KR"].read_bytes()


@pytest.mark.parametrize(
    "suffix, accept, reason",
    [
        (
            "",
            f"{DICOM_ACCEPT}; transfer-syntax=1.2.840.10008.1.2.4.50",
            f"can be sent only in transfer syntax {ELE}; asked for 1.2.840.10008.1.2.4.50",
        ),
        ("", "application/dicom", 'multipart/related; type="application/dicom"'),
        ("", "image/gif", 'multipart/related; type="application/dicom"'),
        ("/metadata", 'multipart/related; type="application/dicom+xml"', "dicom+json only"),
        ("/rendered", "image/gif", "image/png or image/jpeg"),
        ("/frames/1", 'multipart/related; type="image/jp2"', "application/octet-stream"),
    ],
)
def test_unsatisfiable_accept_is_406_with_a_reason(
    get: Get, uncr: Path, suffix: str, accept: str, reason: str
) -> None:
    url = instance_url("RG1_UNCR") + suffix
    response = get(url, accept)
    assert response.status_code == 406
    assert response.json()["error"] == "NotAcceptable"
    assert reason in response.json()["detail"]


def test_accept_list_falls_back_to_a_later_choice(get: Get, uncr: Path) -> None:
    accept = (
        f"{DICOM_ACCEPT}; transfer-syntax=1.2.840.10008.1.2.4.50, "
        f"{DICOM_ACCEPT}; transfer-syntax={ELE}; q=0.5"
    )
    response = get(instance_url("RG1_UNCR"), accept)
    assert response.status_code == 200
    [(_, payload)] = parse_multipart(response)
    assert payload == uncr.read_bytes()


def test_study_with_two_series_and_series_level_narrowing(get: Get, store: Store) -> None:
    study = generate_uid()
    first, second = make_cr(study_uid=study, seed=1), make_cr(study_uid=study, seed=2)
    store([to_bytes(first), to_bytes(second)])
    whole = parse_multipart(get(f"/dicomweb/studies/{study}"))
    assert {sop_uid(p) for _, p in whole} == {first.SOPInstanceUID, second.SOPInstanceUID}
    url = f"/dicomweb/studies/{study}/series/{second.SeriesInstanceUID}"
    [(_, only)] = parse_multipart(get(url))
    assert only == to_bytes(second)


# --- metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_metadata_has_the_attributes_and_no_pixel_data(
    get: Get, rg1: dict[str, Path], level: str
) -> None:
    url = {
        "study": f"/dicomweb/studies/{STUDY}",
        "series": f"/dicomweb/studies/{STUDY}/series/{SERIES}",
        "instance": instance_url("RG1_J2KR"),
    }[level] + "/metadata"
    response = get(url, "application/dicom+json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    assert len(body) == (1 if level == "instance" else 3)
    for attrs in body:
        assert attrs["00100020"]["Value"] == ["9RG1"]  # PatientID
        assert attrs["00080060"]["Value"] == ["CR"]  # Modality
        assert attrs["00280004"]["Value"] == ["MONOCHROME1"]
        assert "7FE00010" not in attrs
    j2kr = next(a for a in body if a["00080018"]["Value"] == [RG1["RG1_J2KR"].SOPInstanceUID])
    assert j2kr["00083002"]["Value"] == [J2K_LOSSLESS]  # Available Transfer Syntax UID


# --- rendered --------------------------------------------------------------------------------


def test_rendered_chest_radiograph_is_not_inverted(get: Get, uncr: Path) -> None:
    response = get(instance_url("RG1_UNCR") + "/rendered")
    assert response.headers["content-type"] == "image/png"
    image = png(response).astype(float)
    assert image.shape == (1955, 1841)
    h, w = image.shape

    def region(y0: float, y1: float, x0: float, x1: float) -> float:
        return float(image[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)].mean())

    # As a reader sees a chest film: air-filled lungs dark, mediastinum and spine bright.
    mediastinum = region(0.25, 0.6, 0.45, 0.55)
    assert region(0.25, 0.55, 0.2, 0.38) < mediastinum - 40
    assert region(0.25, 0.55, 0.62, 0.8) < mediastinum - 40
    # And pixel by pixel: high MONOCHROME1 values (dark on film) must come out dark.
    raw = pydicom.dcmread(uncr).pixel_array.astype(float)
    assert np.corrcoef(raw.ravel(), image.ravel())[0, 1] < -0.99


def test_rendered_jpeg2000_matches_the_uncompressed_rendering(
    get: Get, rg1: dict[str, Path]
) -> None:
    unc = png(get(instance_url("RG1_UNCR") + "/rendered"))
    j2k = png(get(instance_url("RG1_J2KR") + "/rendered"))
    assert np.array_equal(unc, j2k)


def test_rendered_jpeg_with_quality(get: Get, uncr: Path) -> None:
    url = instance_url("RG1_UNCR") + "/rendered"
    low = get(url + "?quality=10", "image/jpeg")
    high = get(url + "?quality=95", "image/jpeg")
    assert low.headers["content-type"] == "image/jpeg"
    assert low.content[:2] == b"\xff\xd8"
    assert len(low.content) < len(high.content)
    assert Image.open(io.BytesIO(low.content)).size == (1841, 1955)
    by_query = get(url + "?accept=image/jpeg")
    assert by_query.headers["content-type"] == "image/jpeg"


def test_window_override_changes_the_image_as_the_formula_says(get: Get, store: Store) -> None:
    ds = make_cr(rows=8, columns=8, WindowCenter=2048, WindowWidth=4096)
    store([to_bytes(ds)])
    url = url_of(ds) + "/rendered"
    default = png(get(url))
    narrow = png(get(url + "?window=1000,200,linear_exact"))
    assert not np.array_equal(default, narrow)
    raw = ds.pixel_array.astype(float)
    expected = np.clip(np.rint(((raw - 1000) / 200 + 0.5) * 255), 0, 255)
    assert np.array_equal(narrow, expected)


def test_viewport_fits_within_and_keeps_the_aspect(get: Get, uncr: Path) -> None:
    url = instance_url("RG1_UNCR") + "/rendered?viewport=256,256"
    assert png(get(url)).shape == (256, 241)


# --- frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["RG1_UNCR", "RG1_J2KR"])
def test_frame_is_decoded_little_endian_pixels(get: Get, rg1: dict[str, Path], name: str) -> None:
    response = get(instance_url(name) + "/frames/1")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/octet-stream"'
    )
    [(content_type, payload)] = parse_multipart(response)
    assert content_type == f"application/octet-stream; transfer-syntax={ELE}"
    assert payload == pydicom.dcmread(rg1[name]).pixel_array.astype("<u2").tobytes()


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="image/jp2"',
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    ],
)
def test_compressed_frame_as_stored_when_asked(get: Get, rg1: dict[str, Path], accept: str) -> None:
    url = instance_url("RG1_J2KR") + "/frames/1"
    response = get(url, accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith('multipart/related; type="image/jp2"')
    [(content_type, payload)] = parse_multipart(response)
    assert content_type == f"image/jp2; transfer-syntax={J2K_LOSSLESS}"
    ds = pydicom.dcmread(rg1["RG1_J2KR"])
    [stored] = list(generate_frames(ds.PixelData, number_of_frames=1))
    assert payload == stored
    assert payload[:4] == b"\xff\x4f\xff\x51"  # a JPEG 2000 codestream: SOC, SIZ


def test_frame_list_of_a_multiframe_instance(get: Get, store: Store) -> None:
    ds = make_cr(rows=4, columns=4)
    frames = np.arange(3 * 16, dtype=np.uint16).reshape(3, 4, 4) * 50
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    store([to_bytes(ds)])
    base = url_of(ds) + "/frames/"
    parts = parse_multipart(get(base + "1,3"))
    assert [p for _, p in parts] == [frames[0].tobytes(), frames[2].tobytes()]
    third = png(get(base + "3/rendered?window=1200,800,linear_exact"))
    expected = np.clip(np.rint(((frames[2] - 1200.0) / 800 + 0.5) * 255), 0, 255)
    assert np.array_equal(third, expected)
    two = get(base + "1,2/rendered")
    assert two.status_code == 400
    assert "one frame" in two.json()["detail"]
    missing = get(base + "4")
    assert missing.status_code == 404
    assert "has 3 frame(s)" in missing.json()["detail"]


@pytest.mark.parametrize(
    "suffix, reason",
    [
        ("/rendered?window=abc", "window"),
        ("/rendered?viewport=0,10", "viewport"),
        ("/rendered?quality=500", "quality"),
        ("/frames/0", "frame numbers"),
        ("/frames/a", "frame numbers"),
        ("/frames/1,,2", "frame numbers"),
        ("/frames/-1/rendered", "frame numbers"),
        ("/frames/1," + ",".join(["1"] * 5000), "frame 1 is listed more than once"),
    ],
)
def test_malformed_parameters_are_400_with_a_reason(
    get: Get, uncr: Path, suffix: str, reason: str
) -> None:
    response = get(instance_url("RG1_UNCR") + suffix)
    assert response.status_code == 400
    assert reason in response.json()["detail"]


# --- errors, roles, access log ---------------------------------------------------------------


def test_unknown_and_mismatched_uids_are_404_with_the_level(
    get: Get, store: Store, uncr: Path
) -> None:
    other = make_cr()
    store([to_bytes(other)])
    sop = RG1["RG1_UNCR"].SOPInstanceUID
    cases = {
        "/dicomweb/studies/1.2.3": "no study 1.2.3",
        f"/dicomweb/studies/{STUDY}/series/1.2.3/metadata": "has no series 1.2.3",
        # A real series, but of another study.
        f"/dicomweb/studies/{STUDY}/series/{other.SeriesInstanceUID}": "has no series",
        # A real instance, asked for under another study and series.
        f"/dicomweb/studies/{other.StudyInstanceUID}/series/{other.SeriesInstanceUID}"
        f"/instances/{sop}/rendered": "has no instance",
        f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/1.2.3/frames/1": "no instance",
    }
    for url, reason in cases.items():
        response = get(url)
        assert response.status_code == 404, url
        assert response.json()["error"] == "NotFound"
        assert reason in response.json()["detail"], url


@pytest.mark.parametrize(
    "url",
    [
        "/dicomweb/studies/abc",
        f"/dicomweb/studies/{STUDY}/series/1.2.x/metadata",
        f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{'1' * 65}/rendered",
    ],
)
def test_invalid_uids_are_400(get: Get, url: str) -> None:
    response = get(url)
    assert response.status_code == 400
    assert "not a valid UID" in response.json()["detail"]


@pytest.mark.parametrize("role", [Role.INTEGRATION, Role.CLINICIAN, Role.ADMIN, Role.AUDITOR])
def test_who_may_retrieve(
    client: TestClient, tokens: dict[Role, str], uncr: Path, role: Role
) -> None:
    for suffix in ["", "/metadata", "/rendered", "/frames/1"]:
        response = client.get(instance_url("RG1_UNCR") + suffix, headers=auth(tokens[role]))
        assert response.status_code == (403 if role is Role.AUDITOR else 200), suffix
    assert client.get(instance_url("RG1_UNCR")).status_code == 401


def test_every_retrieve_is_in_the_access_log(
    client: TestClient, tokens: dict[Role, str], runtime: Runtime, rg1: dict[str, Path]
) -> None:
    token = tokens[Role.CLINICIAN]
    client.get(f"/dicomweb/studies/{STUDY}", headers=auth(token)).read()
    client.get(f"/dicomweb/studies/{STUDY}/series/{SERIES}/metadata", headers=auth(token))
    client.get(instance_url("RG1_UNCR") + "/rendered", headers=auth(token))
    client.get(instance_url("RG1_UNCR") + "/frames/1", headers=auth(token))
    [study] = access_rows(runtime, "dicom.retrieve")
    assert (study.study_instance_uid, study.series_instance_uid, study.result_count) == (
        STUDY,
        None,
        3,
    )
    assert study.role == "clinician" and study.status_code == 200
    [metadata] = access_rows(runtime, "dicom.retrieve.metadata")
    assert (metadata.series_instance_uid, metadata.result_count) == (SERIES, 3)
    for action in ["dicom.retrieve.rendered", "dicom.retrieve.frames"]:
        [row] = access_rows(runtime, action)
        assert row.sop_instance_uid == RG1["RG1_UNCR"].SOPInstanceUID
        assert row.result_count == 1


def test_a_store_need_not_wait_for_a_rendering(
    client: TestClient,
    integration_token: str,
    uncr: Path,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A rendering holds no transaction while it decodes: on SQLite one would hold the only
    # write lock, and every store would queue behind the slowest image.
    rendering, finish = threading.Event(), threading.Event()
    real_render = render.render

    def slow_render(*args: Any, **kwargs: Any) -> bytes:
        rendering.set()
        assert finish.wait(timeout=30), "the store never came through"
        return real_render(*args, **kwargs)

    monkeypatch.setattr(render, "render", slow_render)
    with ThreadPoolExecutor(max_workers=1) as pool:
        rendered = pool.submit(
            client.get, instance_url("RG1_UNCR") + "/rendered", headers=auth(integration_token)
        )
        assert rendering.wait(timeout=30)
        store([to_bytes(make_cr())])  # would wait for the rendering if it held the lock
        finish.set()
        assert rendered.result(timeout=30).status_code == 200


def test_metadata_and_search_give_nan_and_infinities_as_strings(get: Get, store: Store) -> None:
    # FD and FL may hold IEEE 754 NaN and infinities; JSON numbers cannot.
    ds = make_cr(
        XAAcquisitionFrameRate=float("nan"),  # FD
        DisplayedZValue=float("-inf"),  # FL
        CenterOfCircularOutline=[1.5, float("inf")],  # FD, two values: the finite one stays
    )
    store([to_bytes(ds)])
    url = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    response = get(f"{url}/instances/{ds.SOPInstanceUID}/metadata", "application/dicom+json")
    assert response.status_code == 200, response.text
    [attrs] = response.json()
    assert attrs["001811B9"] == {"vr": "FD", "Value": ["NaN"]}
    assert attrs["00182046"] == {"vr": "FL", "Value": ["-Infinity"]}
    assert attrs["00181635"] == {"vr": "FD", "Value": [1.5, "Infinity"]}
    found = get(f"{url}/instances?includefield=001811B9", "application/dicom+json")
    assert found.status_code == 200, found.text
    assert found.json()[0]["001811B9"]["Value"] == ["NaN"]
