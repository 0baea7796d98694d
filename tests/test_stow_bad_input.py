"""STOW-RS bad input: each gets a reason, never a 500, and nothing already stored changes."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from service.app import create_app
from service.dicom.failure import FailureReason
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import (
    make_cr,
    make_sr,
    multipart_body,
    pydicom_test_file,
    stow_headers,
    to_bytes,
    undecodable_jpeg2000,
)
from tests.test_stow import archive_files, failures, instance_count, stow


@pytest.fixture
def stored_before(
    client: TestClient, integration_token: str, runtime: Runtime
) -> dict[Path, bytes]:
    """One instance already in the archive, with its analysis's outputs (it arrives as a
    chest radiograph): tests check all of it is untouched afterwards. The analysis is let
    finish first; its prepared outputs pass through the incoming folder while it runs."""
    assert stow(client, integration_token, [to_bytes(make_cr(seed=7))]).status_code == 200
    assert client.app.state.analysis.jobs.wait_idle(120)  # type: ignore[attr-defined]
    return {p: p.read_bytes() for p in archive_files(runtime)}


def assert_unchanged(runtime: Runtime, before: dict[Path, bytes]) -> None:
    assert instance_count(runtime) == len(before)  # the stored image and its analysis's outputs
    assert {p: p.read_bytes() for p in archive_files(runtime)} == before
    assert list(runtime.archive.incoming.iterdir()) == [], "incoming files left behind"


def without(keyword: str) -> bytes:
    ds = make_cr()
    delattr(ds, keyword)
    return to_bytes(ds)


def meta_replaced(old: bytes, new: bytes) -> bytes:
    """A good file with bytes of its file meta group replaced (same length: the group's
    length stays right)."""
    assert len(old) == len(new)
    whole = to_bytes(make_cr())
    at = whole.index(old)
    assert at < 300  # inside the file meta group
    return whole[:at] + new + whole[at + len(old) :]


def not_a_transfer_syntax() -> bytes:
    # Explicit VR Little Endian named as Basic Film Session SOP Class: a UID, no syntax.
    return meta_replaced(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.5.1.1\0")


def unknown_vr_in_meta() -> bytes:
    return meta_replaced(b"\x02\x00\x10\x00UI", b"\x02\x00\x10\x00UB")


def truncated_in_pixels() -> bytes:
    whole = to_bytes(make_cr(rows=128, columns=128))
    return whole[: len(whole) - 5000]


def truncated_in_header() -> bytes:
    return to_bytes(make_cr())[:300]


def truncated_in_meta_group_length() -> bytes:
    return to_bytes(make_cr())[:142]  # (0002,0000)'s value is bytes 140-143


def truncated_in_a_long_length() -> bytes:
    whole = to_bytes(make_cr())
    pixel_data = whole.index(b"\xe0\x7f\x10\x00OW\x00\x00")
    return whole[: pixel_data + 10]  # inside its 4-byte length


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        pytest.param(
            b"hello, not dicom",
            FailureReason.CANNOT_UNDERSTAND,
            "not a DICOM Part 10 file",
            id="not-dicom",
        ),
        pytest.param(
            b"", FailureReason.CANNOT_UNDERSTAND, "not a DICOM Part 10 file", id="empty-part"
        ),
        pytest.param(
            truncated_in_pixels(),
            FailureReason.CANNOT_UNDERSTAND,
            "truncated",
            id="truncated-pixels",
        ),
        pytest.param(
            truncated_in_header(),
            FailureReason.CANNOT_UNDERSTAND,
            "truncated",
            id="truncated-header",
        ),
        pytest.param(
            truncated_in_meta_group_length(),
            FailureReason.CANNOT_UNDERSTAND,
            "truncated",
            id="truncated-meta-group-length",
        ),
        pytest.param(
            truncated_in_a_long_length(),
            FailureReason.CANNOT_UNDERSTAND,
            "truncated",
            id="truncated-element-length",
        ),
        pytest.param(
            without("StudyInstanceUID"),
            FailureReason.CANNOT_UNDERSTAND,
            "missing StudyInstanceUID",
            id="no-study-uid",
        ),
        pytest.param(
            without("SeriesInstanceUID"),
            FailureReason.CANNOT_UNDERSTAND,
            "missing SeriesInstanceUID",
            id="no-series-uid",
        ),
        pytest.param(
            without("SOPInstanceUID"),
            FailureReason.CANNOT_UNDERSTAND,
            "missing SOPInstanceUID",
            id="no-sop-uid",
        ),
        pytest.param(
            to_bytes(make_cr(sop_uid="1.2.3/../../etc")),
            FailureReason.CANNOT_UNDERSTAND,
            "not a valid UID",
            id="path-in-uid",
        ),
        pytest.param(
            to_bytes(make_sr()),
            FailureReason.SOP_CLASS_NOT_SUPPORTED,
            "is not an image",
            id="non-image",
        ),
        pytest.param(
            pydicom_test_file("dicomdirtests/DICOMDIR").read_bytes(),
            FailureReason.SOP_CLASS_NOT_SUPPORTED,
            "a DICOMDIR: the index of a medium's files",
            id="dicomdir",
        ),
        pytest.param(
            not_a_transfer_syntax(),
            FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
            "is not supported",
            id="not-a-transfer-syntax",
        ),
        pytest.param(
            unknown_vr_in_meta(),
            FailureReason.CANNOT_UNDERSTAND,
            "cannot be parsed",
            id="unknown-vr",
        ),
        pytest.param(
            to_bytes(make_cr(BitsStored=240)),
            FailureReason.CANNOT_UNDERSTAND,
            "Bits Stored must be 1 to Bits Allocated",
            id="bits-stored-over-allocated",
        ),
        pytest.param(
            to_bytes(make_cr(PhotometricInterpretation="MONOCHR<ME2")),
            FailureReason.CANNOT_UNDERSTAND,
            'Photometric Interpretation "MONOCHR<ME2" is not one DICOM defines',
            id="unknown-photometric",
        ),
        pytest.param(
            to_bytes(make_cr(PixelRepresentation=7, BitsAllocated=12)),
            FailureReason.CANNOT_UNDERSTAND,
            "Bits Allocated must be 1 or a multiple of 8 up to 64; Pixel Representation must "
            "be 0 or 1",
            id="bad-pixel-description",
        ),
        pytest.param(
            undecodable_jpeg2000(),
            FailureReason.CANNOT_UNDERSTAND,
            "cannot be decoded",
            id="undecodable-pixels",
        ),
    ],
)
def test_bad_instance_is_refused_with_its_reason(
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    stored_before: dict[Path, bytes],
    payload: bytes,
    code: FailureReason,
    reason: str,
) -> None:
    response = stow(client, integration_token, [payload])
    assert response.status_code == 409, response.text
    [(got_code, got_reason)] = failures(response.json())
    assert got_code == code
    assert reason in got_reason
    assert_unchanged(runtime, stored_before)


def test_study_uid_mismatch_with_the_url_is_refused(
    client: TestClient, integration_token: str, runtime: Runtime, stored_before: dict[Path, bytes]
) -> None:
    response = stow(client, integration_token, [to_bytes(make_cr())], study=generate_uid())
    assert response.status_code == 409
    [(code, reason)] = failures(response.json())
    assert code == FailureReason.STUDY_INSTANCE_UID_MISMATCH
    assert "does not match the study in the request URL" in reason
    assert_unchanged(runtime, stored_before)


def test_series_reused_in_another_study_is_refused(
    client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    first = make_cr()
    assert stow(client, integration_token, [to_bytes(first)]).status_code == 200
    intruder = make_cr(series_uid=first.SeriesInstanceUID)
    response = stow(client, integration_token, [to_bytes(intruder)])
    assert response.status_code == 409
    assert "already stored in another study" in failures(response.json())[0][1]
    assert instance_count(runtime) == 1


@pytest.mark.parametrize(
    ("content_type", "status", "detail"),
    [
        ("application/json", 415, "not supported"),
        ('multipart/related; type="application/dicom+json"; boundary=x', 415, "not supported"),
        (None, 415, "not supported"),
        ('multipart/related; type="application/dicom"', 400, "boundary"),
    ],
)
def test_wrong_media_type_is_refused(
    client: TestClient,
    integration_token: str,
    runtime: Runtime,
    stored_before: dict[Path, bytes],
    content_type: str | None,
    status: int,
    detail: str,
) -> None:
    headers = {"Authorization": f"Bearer {integration_token}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/dicomweb/studies", content=b"{}", headers=headers)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert_unchanged(runtime, stored_before)


def test_a_compressed_body_is_refused_with_the_reason(
    client: TestClient, integration_token: str, runtime: Runtime, stored_before: dict[Path, bytes]
) -> None:
    body = gzip.compress(multipart_body([to_bytes(make_cr())]))
    headers = stow_headers(integration_token) | {"Content-Encoding": "gzip"}
    response = client.post("/dicomweb/studies", content=body, headers=headers)
    assert response.status_code == 415
    assert 'Content-Encoding "gzip" is not supported' in response.json()["detail"]
    assert_unchanged(runtime, stored_before)


def test_truncated_multipart_body_is_a_bad_request(
    client: TestClient, integration_token: str, runtime: Runtime, stored_before: dict[Path, bytes]
) -> None:
    body = multipart_body([to_bytes(make_cr())])[:-40]
    response = client.post(
        "/dicomweb/studies", content=body, headers=stow_headers(integration_token)
    )
    assert response.status_code == 400
    assert "closing boundary" in response.json()["detail"]
    assert_unchanged(runtime, stored_before)


def test_empty_multipart_body_is_a_bad_request(
    client: TestClient, integration_token: str, runtime: Runtime, stored_before: dict[Path, bytes]
) -> None:
    response = client.post(
        "/dicomweb/studies", content=multipart_body([]), headers=stow_headers(integration_token)
    )
    assert response.status_code == 400
    assert "no instances" in response.json()["detail"]
    assert_unchanged(runtime, stored_before)


@pytest.fixture
def limited_client(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(
        update={"max_instance_bytes": 20_000, "max_instances_per_request": 3}
    )
    with TestClient(create_app(limited)) as test_client:
        yield test_client


def test_instance_over_the_size_limit_is_refused(
    limited_client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    small, big = to_bytes(make_cr(rows=32, columns=32)), to_bytes(make_cr(rows=256, columns=256))
    response = stow(limited_client, integration_token, [small, big])
    assert response.status_code == 202
    [(code, reason)] = failures(response.json())
    assert code == FailureReason.OUT_OF_RESOURCES
    assert "over the limit of 20000 bytes" in reason
    assert instance_count(runtime) == 1


def test_too_many_instances_in_one_request_stores_none(
    limited_client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    parts = [to_bytes(make_cr(rows=16, columns=16, seed=i)) for i in range(4)]
    response = stow(limited_client, integration_token, parts)
    assert response.status_code == 413
    assert "more than 3 instances" in response.json()["detail"]
    assert instance_count(runtime) == 0
    assert list(runtime.archive.incoming.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    ["SC_rgb_jpeg_dcmtk.dcm", "JPEG-LL.dcm", "MR_small_jp2klossless.dcm", "RG1_J2KI.dcm"],
    ids=["jpeg-baseline", "jpeg-lossless", "jpeg2000-lossless", "jpeg2000-lossy"],
)
def test_compressed_transfer_syntaxes_are_decoded_and_stored(
    client: TestClient, integration_token: str, runtime: Runtime, name: str
) -> None:
    path = pydicom_test_file(name)
    response = stow(client, integration_token, [path.read_bytes()])
    assert response.status_code == 200, response.text
    [stored] = archive_files(runtime)
    assert stored.read_bytes() == path.read_bytes()
    assert pydicom.dcmread(stored).pixel_array.size > 0


def test_study_already_filed_under_another_patient_is_refused(
    client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    first = make_cr(patient_id="PID-A")
    assert stow(client, integration_token, [to_bytes(first)]).status_code == 200
    same_series = make_cr(
        patient_id="PID-B", study_uid=first.StudyInstanceUID, series_uid=first.SeriesInstanceUID
    )
    new_series = make_cr(patient_id="PID-B", study_uid=first.StudyInstanceUID)
    response = stow(client, integration_token, [to_bytes(same_series), to_bytes(new_series)])
    assert response.status_code == 409
    reasons = [reason for _code, reason in failures(response.json())]
    assert len(reasons) == 2
    assert all("already stored for another PatientID" in r for r in reasons)
    assert instance_count(runtime) == 1
