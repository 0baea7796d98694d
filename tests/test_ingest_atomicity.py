"""A failure midway through storing leaves no half file and no orphan row."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.dicom.archive import Archive
from service.dicom.failure import FailureReason
from service.runtime import Runtime
from tests.factories import make_cr, to_bytes
from tests.test_stow import archive_files, failures, instance_count, stow


def test_disk_failure_while_filing_leaves_nothing(
    client: TestClient, integration_token: str, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: Archive, received: object, relative: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Archive, "place", disk_full)
    response = stow(client, integration_token, [to_bytes(make_cr())])
    assert response.status_code == 409
    [(code, reason)] = failures(response.json())
    assert code == FailureReason.OUT_OF_RESOURCES
    assert "nothing was stored" in reason
    assert instance_count(runtime) == 0
    assert archive_files(runtime) == []
    assert list(runtime.archive.incoming.iterdir()) == []


def test_database_failure_at_commit_removes_the_placed_file(
    client: TestClient, integration_token: str, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = Session.commit

    def failing_commit(self: Session) -> None:
        if self.info.get("failed_once"):
            return real_commit(self)
        self.info["failed_once"] = True
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    monkeypatch.setattr(Session, "commit", failing_commit)
    response = stow(client, integration_token, [to_bytes(make_cr())])
    monkeypatch.setattr(Session, "commit", real_commit)
    assert response.status_code == 409
    [(code, reason)] = failures(response.json())
    assert code == FailureReason.PROCESSING_FAILURE
    assert "database error" in reason
    assert instance_count(runtime) == 0
    assert archive_files(runtime) == []
    assert list(runtime.archive.incoming.iterdir()) == []
