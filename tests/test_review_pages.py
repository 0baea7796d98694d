"""The review pages without a browser: logins, sessions, CSRF, who reaches which page, the
worklist's filters and the decision form's rules (the browser tests drive the same pages)."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from service.analysis.results_files import analysis_dir
from service.app import create_app
from service.auth.roles import Role
from service.db import session_scope
from service.orm import AccessLogEntry, Review, WebSession
from service.orm.base import utcnow
from service.review.pages import ROUTERS
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import bearer
from tests.factories import make_cr, to_bytes
from tests.review_support import (
    PASSWORD,
    add_people,
    csrf_of,
    log_in,
    review_settings,
    store,
    wait_for_analyses,
)

HTML = {"Accept": "text/html"}


@pytest.fixture
def app_settings(settings: Settings, tmp_path: Path) -> Settings:
    return review_settings(settings, tmp_path)


@pytest.fixture
def people(runtime: Runtime) -> dict[Role, str]:
    return add_people(runtime, list(Role))


@pytest.fixture
def web(app_settings: Settings, people: dict[Role, str]) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as client:
        yield client


@pytest.fixture
def analyses(web: TestClient, tokens: dict[Role, str]) -> list[dict[str, Any]]:
    """Three analysed studies on three dates."""
    studies = [make_cr(rows=96, columns=80, study_date=f"2024010{n}", seed=n) for n in (1, 2, 3)]
    store(web, tokens[Role.INTEGRATION], [to_bytes(ds) for ds in studies])
    return wait_for_analyses(web, tokens[Role.INTEGRATION], [ds.StudyInstanceUID for ds in studies])


def logged_in(web: TestClient, people: dict[Role, str], role: Role) -> TestClient:
    response = log_in(web, people[role])
    assert response.status_code == 303, response.text
    return web


def decide(web: TestClient, analysis_id: str, page_html: str, **fields: str) -> Any:
    form = {"csrf_token": csrf_of(page_html), "opened": opened_of(page_html)} | fields
    return web.post(f"/review/analyses/{analysis_id}/decisions", data=form, follow_redirects=False)


def opened_of(html: str) -> str:
    """Return the study view's signed opening time ("" on pages without a decision form)."""
    match = re.search(r'name="opened" value="([^"]+)"', html)
    return match.group(1) if match else ""


# --- who gets in ------------------------------------------------------------------------------


def test_page_routes_stay_out_of_the_api_schema(web: TestClient) -> None:
    paths = web.app.openapi()["paths"]  # type: ignore[attr-defined]
    assert not [p for p in paths if p.startswith("/review")]


def test_every_page_except_login_sends_anonymous_people_to_the_login_page(
    web: TestClient,
) -> None:
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 9
    some_id = uuid.uuid4()
    for route in routes:
        path = "/review" + route.path.replace("{analysis_id}", str(some_id))
        path = path.replace("{kind}", "gradcam")
        for method in route.methods or ():
            response = web.request(method, path, follow_redirects=False)
            if route.path == "/login":
                assert response.status_code in (200, 403), path
                continue
            assert response.status_code == 303, f"{method} {path}: {response.status_code}"
            assert response.headers["location"].startswith("/review/login?next=")


def test_a_bearer_token_does_not_open_the_pages(web: TestClient, tokens: dict[Role, str]) -> None:
    for role in (Role.INTEGRATION, Role.ADMIN):
        response = web.get("/review/", headers=bearer(tokens[role]), follow_redirects=False)
        assert response.status_code == 303
        assert "/review/login" in response.headers["location"]


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.ADMIN])
def test_clinicians_and_admins_reach_the_worklist_and_studies(
    web: TestClient, people: dict[Role, str], analyses: list[dict[str, Any]], role: Role
) -> None:
    answer = log_in(web, people[role])
    assert answer.headers["location"] == "/review/"
    page = web.get("/review/")
    assert page.status_code == 200 and "Worklist" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    study = web.get(f"/review/analyses/{analyses[0]['id']}")
    assert study.status_code == 200
    assert "vigil-test-classifier" in study.text and "not for clinical use" in study.text


def test_auditors_land_on_the_audit_pages_and_may_not_review(
    web: TestClient, people: dict[Role, str], analyses: list[dict[str, Any]]
) -> None:
    answer = log_in(web, people[Role.AUDITOR])
    assert answer.headers["location"] == "/review/audit"
    account = web.get("/review/me")
    assert "Your role does not review studies" in account.text
    worklist = web.get("/review/", headers=HTML)
    assert worklist.status_code == 403
    assert "your role (auditor) may not open the review worklist" in worklist.text
    attempt = decide(web, analyses[0]["id"], account.text, decision="agree", label="nodule")
    assert attempt.status_code == 403
    assert "your role (auditor) may not record review decisions" in attempt.text


def test_integration_accounts_cannot_log_in_to_pages(
    web: TestClient, people: dict[Role, str]
) -> None:
    response = log_in(web, people[Role.INTEGRATION])  # even with the right password
    assert response.status_code == 403
    assert "Integration accounts cannot log in to the pages: they use API tokens." in response.text
    assert "vigil_session" not in response.headers.get("set-cookie", "")


def test_a_wrong_password_is_refused_with_a_message(
    web: TestClient, people: dict[Role, str]
) -> None:
    for username in (people[Role.CLINICIAN], "nobody-at-all"):
        response = log_in(web, username, password="not the password")
        assert response.status_code == 401
        assert "Wrong username or password." in response.text
        assert "vigil_session" not in response.headers.get("set-cookie", "")


def test_a_login_form_without_its_csrf_token_is_refused(
    web: TestClient, people: dict[Role, str]
) -> None:
    web.get("/review/login")
    response = web.post(
        "/review/login",
        data={"username": people[Role.CLINICIAN], "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "without a valid security token (CSRF)" in response.text


def test_after_login_the_person_returns_where_they_were_but_never_off_site(
    web: TestClient, people: dict[Role, str]
) -> None:
    for target, expected in [
        ("/review/?status=unreviewed", "/review/?status=unreviewed"),
        ("https://evil.example/", "/review/"),
        ("//evil.example/review/", "/review/"),
        ("/reviewer-evil", "/review/"),
    ]:
        form = web.get("/review/login", params={"next": target})
        response = web.post(
            "/review/login",
            data={
                "username": people[Role.CLINICIAN],
                "password": PASSWORD,
                "csrf_token": csrf_of(form.text),
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == expected


def test_logout_ends_the_session_and_the_old_cookie_stops_working(
    web: TestClient, people: dict[Role, str], runtime: Runtime
) -> None:
    logged_in(web, people, Role.CLINICIAN)
    cookie = web.cookies.get("vigil_session")
    page = web.get("/review/")
    response = web.post(
        "/review/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert response.headers["location"] == "/review/login?why=logged-out"
    assert response.headers["clear-site-data"] == '"cache"'
    web.cookies.set("vigil_session", cookie or "", path="/review")
    again = web.get("/review/", follow_redirects=False)
    assert again.headers["location"].endswith("why=logged-out")
    with runtime.session_factory() as session:
        assert session.scalars(select(WebSession.revoked_at)).one() is not None


def test_an_expired_session_asks_to_log_in_again(
    web: TestClient, people: dict[Role, str], runtime: Runtime
) -> None:
    logged_in(web, people, Role.CLINICIAN)
    assert web.get("/review/").status_code == 200
    with session_scope(runtime.session_factory) as session:
        session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = web.get("/review/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/review/login?next=%2Freview%2F&why=expired"
    assert "Your session expired" in web.get(response.headers["location"]).text


# --- the decision form ------------------------------------------------------------------------


def test_the_form_records_a_decision_with_its_time_and_logs_the_views(
    web: TestClient, people: dict[Role, str], analyses: list[dict[str, Any]], runtime: Runtime
) -> None:
    logged_in(web, people, Role.CLINICIAN)
    analysis_id = analyses[0]["id"]
    page = web.get(f"/review/analyses/{analysis_id}")
    response = decide(
        web,
        analysis_id,
        page.text,
        decision="disagree",
        label="no finding",
        comment="Artefact.",
        marks='[{"x": 5, "y": 6}]',
    )
    assert response.status_code == 303, response.text
    assert "saved=1" in response.headers["location"]
    shown = web.get(response.headers["location"])
    assert "Decision recorded." in shown.text and "Artefact." in shown.text
    with runtime.session_factory() as session:
        review = session.scalars(select(Review)).one()
        actions = set(session.scalars(select(AccessLogEntry.action)))
    assert (review.channel, review.decision.value, review.marks) == (
        "page",
        "disagree",
        [{"x": 5.0, "y": 6.0}],
    )
    assert review.username == people[Role.CLINICIAN]
    assert review.time_to_decision_ms is not None and review.time_to_decision_ms >= 0
    assert {"review.study", "review.create"} <= actions


@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        ({"decision": "agree", "label": "dragon"}, 400, "label &#39;dragon&#39; is not one of"),
        ({"decision": "agree", "label": "nodule", "marks": '[{"x": 500, "y": 1}]'}, 400, "outside"),
        ({"decision": "", "label": "nodule"}, 400, "decision: Input should be"),
        ({"decision": "agree", "label": "nodule", "comment": "x" * 2001}, 400, "at most 2000"),
        ({"decision": "agree", "label": "nodule", "marks": "not json"}, 400, "marks: not a list"),
    ],
)
def test_bad_form_input_shows_the_form_again_with_the_reason(
    web: TestClient,
    people: dict[Role, str],
    analyses: list[dict[str, Any]],
    runtime: Runtime,
    fields: dict[str, str],
    status: int,
    detail: str,
) -> None:
    logged_in(web, people, Role.CLINICIAN)
    analysis_id = analyses[0]["id"]
    page = web.get(f"/review/analyses/{analysis_id}")
    response = decide(web, analysis_id, page.text, **fields)
    assert response.status_code == status
    assert detail in response.text and 'id="decision-form"' in response.text
    with runtime.session_factory() as session:
        assert session.scalars(select(Review)).all() == []


def test_a_form_without_or_with_a_foreign_csrf_token_is_refused(
    web: TestClient, people: dict[Role, str], analyses: list[dict[str, Any]], runtime: Runtime
) -> None:
    logged_in(web, people, Role.CLINICIAN)
    url = f"/review/analyses/{analyses[0]['id']}/decisions"
    fields = {"decision": "agree", "label": "nodule"}
    missing = web.post(url, data=fields, headers=HTML)
    assert missing.status_code == 403
    assert "arrived without its security token (CSRF)" in missing.text
    foreign = web.post(url, data=fields | {"csrf_token": "x" * 43}, headers=HTML)
    assert foreign.status_code == 403 and "does not belong to your session" in foreign.text
    with runtime.session_factory() as session:
        assert session.scalars(select(Review)).all() == []


# --- the worklist -----------------------------------------------------------------------------


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr data-analysis="([^"]+)"', html)


def test_the_worklist_filters_counts_sorts_and_pages(
    web: TestClient, people: dict[Role, str], analyses: list[dict[str, Any]]
) -> None:
    logged_in(web, people, Role.CLINICIAN)
    newest_first = rows_of(web.get("/review/").text)
    # The fixture's studies are dated 2024-01-01, -02 and -03, in that order.
    assert newest_first == [a["id"] for a in reversed(analyses)]
    first, second = newest_first[0], newest_first[1]
    page = web.get(f"/review/analyses/{first}")
    decide(web, first, page.text, decision="agree", label="nodule")
    page = web.get(f"/review/analyses/{second}")
    decide(web, second, page.text, decision="disagree", label="no finding")
    assert rows_of(web.get("/review/?status=unreviewed").text) == [newest_first[2]]
    assert rows_of(web.get("/review/?status=disagreed").text) == [second]
    assert sorted(rows_of(web.get("/review/?status=reviewed").text)) == sorted([first, second])
    counts = web.get("/review/").text
    assert re.search(r"Unreviewed <span class=\"count\">1</span>", counts)
    assert re.search(r"Disagreed <span class=\"count\">1</span>", counts)
    scores = {a["id"]: max(f["probability"] for f in a["findings"]) for a in analyses}
    by_score = rows_of(web.get("/review/?sort=score").text)
    assert by_score == sorted(scores, key=lambda i: -scores[i])
    assert rows_of(web.get("/review/?date_from=2024-01-02&date_to=2024-01-02").text) == [second]
    assert rows_of(web.get("/review/?modality=MR").text) == []
    assert rows_of(web.get("/review/?model=vigil-test-classifier").text) == newest_first
    paged = web.get("/review/?per_page=5&page=9").text
    assert "Page 1 of 1" in paged
    bad = web.get("/review/?sort=sideways", headers=HTML)
    assert bad.status_code == 400 and "sort: Input should be" in bad.text


def test_j_and_k_follow_the_worklist_order(
    web: TestClient, people: dict[Role, str], analyses: list[dict[str, Any]]
) -> None:
    logged_in(web, people, Role.CLINICIAN)
    order = rows_of(web.get("/review/?sort=score").text)
    following = web.get(f"/review/analyses/{order[0]}/next?sort=score", follow_redirects=False)
    assert following.headers["location"] == f"/review/analyses/{order[1]}?sort=score"
    back = web.get(f"/review/analyses/{order[0]}/previous?sort=score", follow_redirects=False)
    assert back.headers["location"] == "/review/?sort=score"


# --- errors are pages, never tracebacks -------------------------------------------------------


def test_errors_are_pages_without_a_traceback(
    app_settings: Settings, people: dict[Role, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.review import worklist

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(worklist, "build", broken)
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as web:
        logged_in(web, people, Role.CLINICIAN)
        response = web.get("/review/", headers=HTML)
        assert response.status_code == 500
        assert "quote request id" in response.text and response.headers["x-request-id"]
        assert "Traceback" not in response.text and "secret internals" not in response.text
        missing = web.get(f"/review/analyses/{uuid.uuid4()}", headers=HTML)
        assert missing.status_code == 404 and "no analysis" in missing.text
        unknown = web.get("/review/nowhere", headers=HTML)
        assert unknown.status_code == 404 and "there is no such page" in unknown.text
        scripted = web.get(
            f"/review/analyses/{uuid.uuid4()}/image.bin", headers={"Accept": "application/json"}
        )
        assert scripted.status_code == 404 and scripted.json()["error"] == "NotFound"


def test_an_overlay_whose_map_is_gone_from_the_results_folder_says_so(
    web: TestClient,
    people: dict[Role, str],
    analyses: list[dict[str, Any]],
    app_settings: Settings,
) -> None:
    logged_in(web, people, Role.CLINICIAN)
    analysis_id = analyses[0]["id"]
    shutil.rmtree(analysis_dir(app_settings.results_path, uuid.UUID(analysis_id)))
    response = web.get(
        f"/review/analyses/{analysis_id}/overlays/gradcam.png", headers={"Accept": "text/html"}
    )
    assert response.status_code == 404
    assert (
        f"analysis {analysis_id}&#39;s gradcam map is missing from the results folder"
        in response.text
    )


def test_a_nul_in_a_form_field_is_refused_with_the_reason(
    web: TestClient, people: dict[Role, str], analyses: list[dict[str, Any]], runtime: Runtime
) -> None:
    # PostgreSQL cannot hold NUL in text: a login or a comment carrying one failed there.
    refused = log_in(web, "someone\x00")
    assert refused.status_code == 400 and "must not contain NUL (0x00) characters" in refused.text
    logged_in(web, people, Role.CLINICIAN)
    analysis_id = analyses[0]["id"]
    page = web.get(f"/review/analyses/{analysis_id}")
    response = decide(
        web, analysis_id, page.text, decision="agree", label="nodule", comment="a\x00b"
    )
    assert response.status_code == 400
    assert "must not contain NUL (0x00) characters" in response.text
    with runtime.session_factory() as session:
        assert session.scalars(select(Review)).all() == []
