"""Logs are JSON lines with a request id, and never hold patient identifiers or bodies."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from pydicom.uid import ImplicitVRLittleEndian

from service.app import create_app
from service.log_config import configure_logging
from service.results.output_identity import OutputKind
from service.settings import Settings
from tests.factories import make_cr, to_bytes, undecodable_jpeg2000
from tests.test_dicom_outputs import build, source
from tests.test_stow import stow

SECRET_NAME = "Zyxwvut^Patientname"
SECRET_ID = "PHI-4242-ID"


def test_logs_are_json_and_free_of_patient_identifiers(
    capsys: pytest.CaptureFixture[str], client: TestClient, integration_token: str
) -> None:
    # capsys comes first so the app's logger is created writing into the capture.
    ds = make_cr(patient_name=SECRET_NAME, patient_id=SECRET_ID)
    payload = to_bytes(ds)
    assert stow(client, integration_token, [payload]).status_code == 200
    stow(client, integration_token, [payload[:-100]])  # a refusal is logged too
    client.get(
        "/dicomweb/studies",
        params={"PatientName": SECRET_NAME, "PatientID": SECRET_ID},
        headers={"Authorization": f"Bearer {integration_token}"},
    )
    logged = capsys.readouterr().err
    assert "request.completed" in logged
    assert SECRET_NAME.split("^")[0] not in logged
    assert SECRET_ID not in logged
    completed = [
        json.loads(line)
        for line in logged.splitlines()
        if line.startswith("{") and "request.completed" in line
    ]
    assert len(completed) >= 3
    assert all(entry["request_id"] for entry in completed)
    assert all("?" not in entry["route"] for entry in completed)


def test_an_unexpected_error_answers_500_without_a_traceback(
    settings: Settings, integration_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Break the route from inside: a TypeError the handler cannot expect.
    monkeypatch.setattr("service.auth.endpoints.ROLE_PERMISSIONS", None)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {integration_token}"}
        )
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "InternalError"
    assert "Traceback" not in response.text
    assert "request id" in body["detail"]
    assert response.headers["x-request-id"] in body["detail"]


@pytest.mark.parametrize("kind", tuple(OutputKind))
def test_building_an_output_logs_no_identifier_of_its_source(
    capsys: pytest.CaptureFixture[str], kind: OutputKind
) -> None:
    configure_logging("INFO")
    built = build("synthetic", kind)
    logged = capsys.readouterr().err
    assert built.SOPInstanceUID  # an output was built
    assert source("synthetic").SOPInstanceUID not in logged
    assert source("synthetic").StudyInstanceUID not in logged


def test_values_a_library_finds_malformed_are_not_logged(
    capsys: pytest.CaptureFixture[str], client: TestClient, integration_token: str
) -> None:
    # pydicom warns about (and logs) each malformed value it reads, quoting it: here a UID,
    # which Vigil's own lines never name. Implicit VR: read by pydicom, not by Vigil's
    # plain reader. Warnings are log lines too (JSON), not bare text.
    ds = make_cr(FrameOfReferenceUID="1.2.840.99999.4242")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    payload = to_bytes(ds).replace(b"1.2.840.99999.4242", b"1.2.840.99999.42x2")
    logged = stored_and_logged(capsys, client, integration_token, payload, 200)
    assert "request.completed" in logged
    assert "42x2" not in logged


def test_a_library_exception_is_logged_as_json_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    try:
        raise RuntimeError("the library failed")
    except RuntimeError:
        logging.getLogger("some.library").exception("it went wrong")
    [line] = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["event"] == "it went wrong"
    assert entry["level"] == "error"
    assert "RuntimeError: the library failed" in entry["exception"]
    assert "exc_info" not in entry


def test_a_decoder_failure_is_reported_once_by_vigil(
    capsys: pytest.CaptureFixture[str], client: TestClient, integration_token: str
) -> None:
    # pydicom logs each decoder plugin's failure with its traceback, then raises one error
    # naming them all: the refusal's reason says it; pydicom's own lines are left out.
    payload = undecodable_jpeg2000()
    logged = stored_and_logged(capsys, client, integration_token, payload, 409)
    assert "ingest.rejected" in logged
    assert "J2K" not in logged


def stored_and_logged(
    capsys: pytest.CaptureFixture[str],
    client: TestClient,
    token: str,
    payload: bytes,
    status: int,
) -> str:
    """STOW one file, check the answer's status; return what the server logged meanwhile
    (checked to be JSON lines only)."""
    capsys.readouterr()  # what building the file printed
    response = stow(client, token, [payload])
    assert response.status_code == status, response.text
    logged = capsys.readouterr().err
    assert all(line.startswith("{") for line in logged.splitlines() if line.strip())
    return logged
