"""The auditor's page (/review/audit): list reports, create one from the form, open its files;
other roles are turned away."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from service.auth.roles import Role
from service.db import session_scope
from service.runtime import Runtime
from tests.audit_seed import SeedCase, seed
from tests.review_support import add_people, csrf_of, log_in

PAGE = "/review/audit"


def test_an_auditor_creates_a_report_and_opens_it(client: TestClient, runtime: Runtime) -> None:
    people = add_people(runtime, [Role.AUDITOR])
    with session_scope(runtime.session_factory) as session:
        seed(session, [SeedCase(flags=("border",)), SeedCase(), SeedCase(institution="Site B")])
    assert log_in(client, people[Role.AUDITOR]).status_code == 303
    page = client.get(PAGE)
    assert page.status_code == 200 and "No reports yet" in page.text
    assert "Include patient identifiers" not in page.text  # admins only
    made = client.post(
        f"{PAGE}/reports",
        data={"csrf_token": csrf_of(page.text), "date_from": "", "site": "Site A"},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    listing = client.get(PAGE).text
    [link] = re.findall(r'href="(/review/audit/reports/[0-9a-f-]+/report\.html)"', listing)
    assert "auditor-person" in listing and "status-done" in listing
    report = client.get(link)
    assert report.status_code == 200 and "Bias audit: cohort report" in report.text
    assert "content-security-policy" in report.headers
    assert client.get(link.replace("report.html", "report.css")).status_code == 200
    assert client.get(link.replace("report.html", "secrets.txt")).status_code == 404


def test_bad_dates_come_back_with_the_reason(client: TestClient, runtime: Runtime) -> None:
    people = add_people(runtime, [Role.ADMIN])
    log_in(client, people[Role.ADMIN])
    page = client.get(PAGE)
    assert "Include patient identifiers" in page.text
    answer = client.post(
        f"{PAGE}/reports",
        data={"csrf_token": csrf_of(page.text), "date_from": "2026-05-02", "date_to": "2026-05-01"},
    )
    assert answer.status_code == 200 and "inverted" in answer.text


def test_the_page_is_closed_to_clinicians_and_forms_need_csrf(
    client: TestClient, runtime: Runtime
) -> None:
    people = add_people(runtime, [Role.CLINICIAN, Role.AUDITOR])
    log_in(client, people[Role.CLINICIAN])
    refused = client.get(PAGE)
    assert refused.status_code == 403 and "clinician" in refused.text
    client.cookies.clear()
    log_in(client, people[Role.AUDITOR])
    forged = client.post(f"{PAGE}/reports", data={"site": "x"})
    assert forged.status_code == 403 and "CSRF" in forged.text


def test_a_nul_in_a_form_field_comes_back_with_the_reason(
    client: TestClient, runtime: Runtime
) -> None:
    # PostgreSQL cannot hold NUL in text: such a filter failed its statement there (a 500).
    people = add_people(runtime, [Role.AUDITOR])
    log_in(client, people[Role.AUDITOR])
    page = client.get(PAGE)
    answer = client.post(
        f"{PAGE}/reports", data={"csrf_token": csrf_of(page.text), "site": "North\x00"}
    )
    assert answer.status_code == 400, answer.text
    assert "must not contain NUL (0x00) characters" in answer.text
