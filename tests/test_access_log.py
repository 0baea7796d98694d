"""The access log: a row for every read or write of patient data, and rows never change."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from service.auth import access_log
from service.auth.endpoints import MAX_OFFSET
from service.auth.roles import Role
from service.dicom import stow_endpoints
from service.orm import AccessLogEntry
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import bearer
from tests.factories import make_cr, to_bytes
from tests.test_stow import stow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No analysis on arrival here: its result objects are filed with log rows of their own
    (see test_analysis_api) whenever the analysis happens to finish, which would race with
    these tests' expectations of exactly the rows the API calls wrote."""
    return settings.model_copy(update={"auto_analyse": False})


def log_rows(runtime: Runtime) -> list[AccessLogEntry]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.at)))


def test_store_writes_who_what_when_and_from_where(
    client: TestClient, tokens: dict[Role, str], runtime: Runtime
) -> None:
    ds = make_cr()
    response = stow(client, tokens[Role.INTEGRATION], [to_bytes(ds)])
    assert response.status_code == 200
    [row] = log_rows(runtime)
    assert row.username == "svc-integration"
    assert row.role == "integration"
    assert row.action == "dicom.store"
    assert row.sop_instance_uid == ds.SOPInstanceUID
    assert row.study_instance_uid == ds.StudyInstanceUID
    assert row.client_addr == "testclient"
    assert row.request_id == response.headers["x-request-id"]
    assert row.at is not None
    assert row.token_pk is not None and row.user_pk is not None


def stored_and_clashing(
    client: TestClient, tokens: dict[Role, str], seed: int
) -> tuple[Dataset, Dataset]:
    """Store an instance; return it and another with its UIDs and other bytes (a conflict)."""
    first = make_cr(seed=seed)
    stow(client, tokens[Role.INTEGRATION], [to_bytes(first)])
    clash = make_cr(
        seed=seed + 1,
        sop_uid=first.SOPInstanceUID,
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
    )
    return first, clash


def test_refused_store_of_a_known_instance_is_logged_too(
    client: TestClient, tokens: dict[Role, str], runtime: Runtime
) -> None:
    _first, clash = stored_and_clashing(client, tokens, seed=1)
    stow(client, tokens[Role.INTEGRATION], [to_bytes(clash)])
    actions = [row.action for row in log_rows(runtime)]
    assert actions == ["dicom.store", "dicom.store.refused"]


def test_a_refusal_the_log_cannot_take_still_answers_with_its_reason(
    client: TestClient,
    tokens: dict[Role, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The database error that failed a store may fail the refusal's log row too: the client
    # still gets each instance's reason (a 409), not a server error.
    first, clash = stored_and_clashing(client, tokens, seed=3)
    real_record = access_log.record_request_access

    def failing(request: Any, principal: Any, action: str, **kwargs: Any) -> None:
        if action == "dicom.store.refused":
            raise OperationalError("INSERT INTO access_log", {}, Exception("disk I/O error"))
        real_record(request, principal, action, **kwargs)

    monkeypatch.setattr(stow_endpoints, "record_request_access", failing)
    response = stow(client, tokens[Role.INTEGRATION], [to_bytes(clash)])
    assert response.status_code == 409, response.text
    [failed] = response.json()["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [first.SOPInstanceUID]
    assert [row.action for row in log_rows(runtime)] == ["dicom.store"]


def test_admin_reads_the_log_newest_first_and_filters_by_study(
    client: TestClient, tokens: dict[Role, str], runtime: Runtime
) -> None:
    a, b = make_cr(), make_cr()
    stow(client, tokens[Role.INTEGRATION], [to_bytes(a)])
    stow(client, tokens[Role.ADMIN], [to_bytes(b)])
    rows = client.get("/api/v1/access-log", headers=bearer(tokens[Role.ADMIN])).json()
    assert [r["study_instance_uid"] for r in rows] == [b.StudyInstanceUID, a.StudyInstanceUID]
    only_a = client.get(
        "/api/v1/access-log",
        params={"study": a.StudyInstanceUID},
        headers=bearer(tokens[Role.ADMIN]),
    ).json()
    assert [r["username"] for r in only_a] == ["svc-integration"]


def test_a_filter_the_log_does_not_have_is_refused_not_ignored(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    # Ignored, `until` or `action` answered every row, as if the log had been filtered.
    admin = bearer(tokens[Role.ADMIN])
    for params in ({"until": "2020-01-01"}, {"action": "dicom.store", "limit": "5"}):
        answer = client.get("/api/v1/access-log", params=params, headers=admin)
        assert answer.status_code == 400, answer.text
        name = next(iter(params))
        assert answer.json()["detail"] == (
            f"unknown query parameter '{name}'; this route takes: limit, offset, since, study, "
            "username"
        )
    assert client.get("/api/v1/me", params={"x": "1"}, headers=admin).status_code == 400
    assert client.get("/api/v1/access-log", params={"limit": "5"}, headers=admin).status_code == 200


@pytest.mark.parametrize(
    "statement", ["UPDATE access_log SET username = 'someone else'", "DELETE FROM access_log"]
)
def test_the_database_refuses_to_change_or_delete_log_rows(
    client: TestClient, integration_token: str, runtime: Runtime, statement: str
) -> None:
    stow(client, integration_token, [to_bytes(make_cr())])
    with pytest.raises(DBAPIError, match="append-only"), runtime.engine.begin() as conn:
        conn.execute(text(statement))
    [row] = log_rows(runtime)
    assert row.username == "svc-integration"


@pytest.mark.parametrize("offset", [str(MAX_OFFSET + 1), "99999999999999999999", "-1"])
def test_an_offset_out_of_range_is_refused_with_the_reason(
    client: TestClient, tokens: dict[Role, str], offset: str
) -> None:
    response = client.get(
        "/api/v1/access-log", params={"offset": offset}, headers=bearer(tokens[Role.ADMIN])
    )
    assert response.status_code == 422, response.text
    assert "offset" in response.text


def test_the_largest_offset_finds_no_rows(
    client: TestClient, tokens: dict[Role, str], runtime: Runtime
) -> None:
    stow(client, tokens[Role.INTEGRATION], [to_bytes(make_cr())])
    response = client.get(
        "/api/v1/access-log", params={"offset": MAX_OFFSET}, headers=bearer(tokens[Role.ADMIN])
    )
    assert response.status_code == 200, response.text
    assert response.json() == []  # past the rows there are
    assert log_rows(runtime)
