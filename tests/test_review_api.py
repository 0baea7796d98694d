"""Review decisions through the API: recorded, amended as new rows, listed, and every kind of
bad input refused with a reason and nothing written. Also the regions' outlines."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from service.app import create_app
from service.auth.roles import Role
from service.db import session_scope
from service.orm import AccessLogEntry, Analysis, Review
from service.orm.base import utcnow
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import bearer
from tests.factories import make_cr, to_bytes
from tests.review_support import review_settings, store, wait_for_analyses

ROWS, COLUMNS = 96, 80


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(review_settings(settings, tmp_path))) as client:
        yield client


@pytest.fixture
def analysis(api: TestClient, tokens: dict[Role, str]) -> dict[str, Any]:
    ds = make_cr(rows=ROWS, columns=COLUMNS)
    store(api, tokens[Role.INTEGRATION], [to_bytes(ds)])
    [done] = wait_for_analyses(api, tokens[Role.INTEGRATION], [ds.StudyInstanceUID])
    return done


def post(api: TestClient, token: str, analysis_id: str, body: Any) -> Any:
    return api.post(f"/api/v1/analyses/{analysis_id}/reviews", json=body, headers=bearer(token))


def review_count(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Review)) or 0


def test_a_decision_is_recorded_amended_and_listed_with_both_rows(
    api: TestClient, tokens: dict[Role, str], analysis: dict[str, Any], runtime: Runtime
) -> None:
    token = tokens[Role.CLINICIAN]
    first = post(
        api,
        token,
        analysis["id"],
        {
            "decision": "disagree",
            "label": "no finding",
            "marks": [{"x": 10, "y": 20.25}],
            "comment": "Looks like a nipple shadow.",
            "opened_at": (utcnow() - timedelta(seconds=42)).isoformat(),
        },
    )
    assert first.status_code == 201, first.text
    made = first.json()
    assert made["model"]["name"] == analysis["model"]["name"]  # says which model was reviewed
    assert made["marks"] == [{"x": 10.0, "y": 20.2}]  # image pixels, to a tenth
    assert 42_000 <= made["time_to_decision_ms"] < 60_000 and made["channel"] == "api"
    amended = post(
        api, token, analysis["id"], {"decision": "agree", "label": "nodule", "amends": made["id"]}
    )
    assert amended.status_code == 201, amended.text
    listed = api.get(f"/api/v1/analyses/{analysis['id']}/reviews", headers=bearer(token)).json()
    assert [(r["decision"], r["current"]) for r in listed] == [
        ("disagree", False),
        ("agree", True),
    ]
    assert listed[0]["amended_by"] == amended.json()["id"]
    assert listed[1]["amends"] == made["id"]
    with runtime.session_factory() as session:
        rows = session.scalars(select(Review).order_by(Review.created_at)).all()
        assert [r.username for r in rows] == ["svc-clinician", "svc-clinician"]
        assert rows[1].amends_pk == rows[0].id and rows[0].comment.startswith("Looks like")
        actions = session.scalars(select(AccessLogEntry.action)).all()
    assert actions.count("review.create") == 2 and "review.list" in actions


def test_times_given_at_any_offset_read_back_as_the_same_moment_in_utc(
    api: TestClient, tokens: dict[Role, str], analysis: dict[str, Any]
) -> None:
    """SQLite keeps no offset: a time at +05:00 was read back five hours off (and every
    stored time came back without a zone there, where PostgreSQL's carried one)."""
    opened = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    at_plus_five = opened.astimezone(timezone(timedelta(hours=5))).isoformat()
    body = {"decision": "agree", "label": "nodule", "opened_at": at_plus_five}
    made = post(api, tokens[Role.CLINICIAN], analysis["id"], body)
    assert made.status_code == 201, made.text
    [listed] = api.get(
        f"/api/v1/analyses/{analysis['id']}/reviews", headers=bearer(tokens[Role.CLINICIAN])
    ).json()
    assert datetime.fromisoformat(listed["opened_at"]) == opened
    assert listed["opened_at"].endswith("Z") and listed["created_at"].endswith("Z")
    read = api.get(f"/api/v1/analyses/{analysis['id']}", headers=bearer(tokens[Role.CLINICIAN]))
    for name in ("created_at", "started_at", "finished_at"):
        moment = datetime.fromisoformat(read.json()[name])
        assert moment.utcoffset() == timedelta(0), (name, read.json()[name])


def test_an_integration_viewer_may_record_and_read_decisions(
    api: TestClient, tokens: dict[Role, str], analysis: dict[str, Any]
) -> None:
    body = {"decision": "uncertain", "label": "other finding", "comment": "via the viewer"}
    assert post(api, tokens[Role.INTEGRATION], analysis["id"], body).status_code == 201
    listed = api.get(
        f"/api/v1/analyses/{analysis['id']}/reviews", headers=bearer(tokens[Role.INTEGRATION])
    )
    assert [r["role"] for r in listed.json()] == ["integration"]


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"analysis_id": str(uuid.uuid4())}, 404, "no analysis"),
        ({"body": {"decision": "agree", "label": "dragon"}}, 400, "label 'dragon' is not one of"),
        (
            {"body": {"decision": "agree", "label": "nodule", "marks": [{"x": COLUMNS, "y": 1}]}},
            400,
            "mark 1 at (80, 1) lies outside the image",
        ),
        (
            {"body": {"decision": "agree", "label": "nodule", "marks": [{"x": 1, "y": -0.5}]}},
            400,
            "lies outside the image",
        ),
        ({"body": None}, 422, "body: Field required"),
        ({"body": {}}, 422, "decision: Field required"),
        (
            {"body": {"decision": "agree", "label": "nodule", "comment": "x" * 2001}},
            422,
            "comment: String should have at most 2000 characters",
        ),
        ({"body": {"decision": "maybe", "label": "nodule"}}, 422, "decision: Input should be"),
        ({"body": {"decision": "agree", "label": ""}}, 422, "label: String should have at least"),
        ({"body": {"decision": "agree", "label": "nodule", "colour": 1}}, 422, "colour"),
        (
            {"body": {"decision": "agree", "label": "nodule", "amends": str(uuid.uuid4())}},
            404,
            "to amend",
        ),
        (
            {
                "body": {
                    "decision": "agree",
                    "label": "nodule",
                    "opened_at": "2999-01-01T00:00:00Z",
                }
            },
            400,
            "opened_at lies in the future",
        ),
        (
            {"body": {"decision": "agree", "label": "nodule", "opened_at": "2020-01-01T00:00Z"}},
            400,
            "opened_at lies more than 7 days ago",
        ),
        (
            {"body": {"decision": "agree", "label": "nodule", "comment": "seen\u0000twice"}},
            422,
            "comment: Value error, must not contain NUL (0x00) characters",
        ),
    ],
    ids=[
        "unknown-analysis",
        "invalid-label",
        "mark-right-of-image",
        "mark-above-image",
        "empty-body",
        "empty-object",
        "oversized-comment",
        "invalid-decision",
        "empty-label",
        "unknown-field",
        "amends-unknown",
        "opened-in-future",
        "opened-long-ago",
        "nul-in-comment",
    ],
)
def test_bad_input_gets_a_reason_and_changes_nothing(
    api: TestClient,
    tokens: dict[Role, str],
    analysis: dict[str, Any],
    runtime: Runtime,
    change: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    analysis_id = change.get("analysis_id", analysis["id"])
    body = change.get("body", {"decision": "agree", "label": "nodule"})
    before = review_count(runtime)
    response = post(api, tokens[Role.CLINICIAN], analysis_id, body)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert review_count(runtime) == before


def test_amendments_form_one_chain_by_the_author(
    api: TestClient, tokens: dict[Role, str], analysis: dict[str, Any], runtime: Runtime
) -> None:
    first = post(
        api, tokens[Role.CLINICIAN], analysis["id"], {"decision": "agree", "label": "nodule"}
    )
    amend = {"decision": "disagree", "label": "no finding", "amends": first.json()["id"]}
    other = post(api, tokens[Role.INTEGRATION], analysis["id"], amend)
    assert other.status_code == 403 and "only svc-clinician may amend" in other.json()["detail"]
    assert post(api, tokens[Role.CLINICIAN], analysis["id"], amend).status_code == 201
    again = post(api, tokens[Role.CLINICIAN], analysis["id"], amend)
    assert again.status_code == 409 and "already amended" in again.json()["detail"]
    assert review_count(runtime) == 2


def test_an_analysis_that_is_not_done_cannot_be_reviewed(
    api: TestClient, tokens: dict[Role, str], analysis: dict[str, Any], runtime: Runtime
) -> None:
    with session_scope(runtime.session_factory) as session:
        done = session.get(Analysis, uuid.UUID(analysis["id"]))
        assert done is not None
        queued = Analysis(
            instance_pk=done.instance_pk,
            study_pk=done.study_pk,
            model_name=done.model_name,
            model_version=done.model_version,
            model_sha256="0" * 64,
            methods="gradcam",
        )
        session.add(queued)
        session.flush()
        queued_id = str(queued.id)
    response = post(api, tokens[Role.CLINICIAN], queued_id, {"decision": "agree", "label": "x"})
    assert response.status_code == 409
    assert "is queued: it has nothing to review yet" in response.json()["detail"]
    assert review_count(runtime) == 0


def test_the_database_refuses_to_change_or_delete_a_decision(
    api: TestClient, tokens: dict[Role, str], analysis: dict[str, Any], runtime: Runtime
) -> None:
    post(api, tokens[Role.CLINICIAN], analysis["id"], {"decision": "agree", "label": "nodule"})
    for statement in ("UPDATE reviews SET decision = 'disagree'", "DELETE FROM reviews"):
        with pytest.raises(DatabaseError, match="append-only"), runtime.engine.begin() as conn:
            conn.execute(text(statement))
    assert review_count(runtime) == 1


def test_regions_json_outlines_each_region_of_the_table(
    api: TestClient, tokens: dict[Role, str], analysis: dict[str, Any]
) -> None:
    response = api.get(
        f"/api/v1/analyses/{analysis['id']}/regions.json", headers=bearer(tokens[Role.CLINICIAN])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["columns"], body["rows"], body["source"]) == (COLUMNS, ROWS, "grid")
    table = {r["name"]: r["probability"] for r in analysis["regions"]}
    assert {r["name"]: r["probability"] for r in body["regions"]} == table
    top_left = body["regions"][0]
    assert top_left["box"] == [0, 0, 27, 32]  # 80 / 3 and 96 / 3, rounded
    assert top_left["outline"] == [[0, 0], [0, 32], [27, 32], [27, 0]]


def test_regions_of_lung_zones_whose_map_is_gone_are_not_drawn_as_a_grid(
    api: TestClient, tokens: dict[Role, str], analysis: dict[str, Any], runtime: Runtime
) -> None:
    """Without the lungs map the outlines fell back to the grid, under zones' probabilities."""
    with session_scope(runtime.session_factory) as session:
        row = session.get(Analysis, uuid.UUID(analysis["id"]))
        assert row is not None and row.results is not None
        row.results = row.results | {"overlays": [*row.results["overlays"], "lungs"]}
    response = api.get(
        f"/api/v1/analyses/{analysis['id']}/regions.json", headers=bearer(tokens[Role.CLINICIAN])
    )
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"analysis {analysis['id']}'s lungs map is missing from the results folder; tell an admin"
    )
