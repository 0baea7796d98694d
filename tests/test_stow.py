"""STOW-RS: storing instances, idempotence, conflicts and every kind of bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.dicom.failure import FailureReason
from service.orm import Instance
from service.runtime import Runtime
from tests.factories import make_cr, multipart_body, rg1_files, stow_headers, to_bytes

FAILED = "00081198"
REFERENCED = "00081199"
REASON = "00081197"
DETAIL = "00091001"


def stow(client: TestClient, token: str, parts: list[bytes], study: str | None = None):
    url = "/dicomweb/studies" + (f"/{study}" if study else "")
    return client.post(url, content=multipart_body(parts), headers=stow_headers(token))


def failures(body: dict[str, Any]) -> list[tuple[int, str]]:
    return [
        (item[REASON]["Value"][0], item[DETAIL]["Value"][0])
        for item in body.get(FAILED, {}).get("Value", [])
    ]


def instance_count(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Instance)) or 0


def archive_files(runtime: Runtime) -> list[Path]:
    root = runtime.archive.root
    return sorted(p for p in root.rglob("*.dcm"))


def test_rg1_files_store_and_answer_referenced_sop_sequence(
    client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    files = rg1_files()
    response = stow(client, integration_token, [p.read_bytes() for p in files.values()])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    referenced = body[REFERENCED]["Value"]
    assert len(referenced) == 4
    assert FAILED not in body
    # RG1_UNCI and RG1_J2KI are one SOP instance in two transfer syntaxes: stored once.
    assert instance_count(runtime) == 3
    assert len(archive_files(runtime)) == 3


def test_same_bytes_twice_is_success_without_duplicate(
    client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    payload = to_bytes(make_cr())
    assert stow(client, integration_token, [payload]).status_code == 200
    again = stow(client, integration_token, [payload])
    assert again.status_code == 200
    assert len(again.json()[REFERENCED]["Value"]) == 1
    assert instance_count(runtime) == 1


def test_same_uid_different_bytes_is_a_conflict_and_keeps_the_stored_copy(
    client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    first = make_cr(seed=1)
    assert stow(client, integration_token, [to_bytes(first)]).status_code == 200
    stored = archive_files(runtime)[0].read_bytes()
    changed = make_cr(
        seed=2,
        sop_uid=first.SOPInstanceUID,
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
    )
    response = stow(client, integration_token, [to_bytes(changed)])
    assert response.status_code == 409
    [(code, reason)] = failures(response.json())
    assert code == FailureReason.DUPLICATE_SOP_INSTANCE
    assert "already stored with different content" in reason
    assert archive_files(runtime)[0].read_bytes() == stored
    assert instance_count(runtime) == 1


def test_partial_success_answers_202_with_both_sequences(
    client: TestClient, integration_token: str, runtime: Runtime
) -> None:
    response = stow(client, integration_token, [to_bytes(make_cr()), b"not dicom at all"])
    assert response.status_code == 202
    body = response.json()
    assert len(body[REFERENCED]["Value"]) == 1
    [(code, reason)] = failures(body)
    assert code == FailureReason.CANNOT_UNDERSTAND
    assert "not a DICOM Part 10 file" in reason
    assert instance_count(runtime) == 1
