"""Analyses end to end on the embedded default: arrival rules, requests, results, overlays,
DICOM outputs in the archive, failures that stay with their own image."""

from __future__ import annotations

import io
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select

from service.analysis import overlay_images
from service.analysis.results_files import analysis_dir
from service.app import create_app
from service.auth.roles import Role
from service.dicom.parse import parse_instance
from service.dicom.repository import get_instance
from service.orm import AccessLogEntry
from service.runtime import Runtime
from service.settings import Settings
from service.worker.jobs import InProcessJobs
from tests.conftest import bearer
from tests.factories import make_cr, to_bytes
from tests.model_bundles import TEST_CLASSIFIER, write_test_classifier
from tests.test_stow import stow


@pytest.fixture
def analysis_settings(settings: Settings, tmp_path: Path) -> Settings:
    write_test_classifier(tmp_path / "models")
    return settings.model_copy(
        update={"models_dir": tmp_path / "models", "default_model": TEST_CLASSIFIER}
    )


@pytest.fixture
def api(analysis_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(analysis_settings)) as client:
        yield client


def wait_done(api: TestClient, token: str, analysis_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = api.get(
            f"/api/v1/analyses/{analysis_id}", headers=bearer(token)
        ).json()
        if body["status"] in ("done", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def analyses_of(api: TestClient, token: str, study_uid: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/studies/{study_uid}/analyses", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def analysed_on_arrival(
    api: TestClient, tokens: dict[Role, str]
) -> tuple[Dataset, dict[str, Any], dict[str, Any]]:
    """Store a small CR and wait for its analysis on arrival; return the image, the analysis
    as first listed, and the analysis once it has finished (done or failed)."""
    ds = make_cr(rows=96, columns=80)
    assert stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)]).status_code == 200
    [queued] = analyses_of(api, tokens[Role.CLINICIAN], ds.StudyInstanceUID)
    return ds, queued, wait_done(api, tokens[Role.CLINICIAN], queued["id"])


def test_an_arriving_chest_radiograph_is_analysed(
    api: TestClient, tokens: dict[Role, str], runtime: Runtime
) -> None:
    ds, queued, result = analysed_on_arrival(api, tokens)
    assert queued["trigger"] == "arrival"
    assert result["status"] == "done", result["failure_reason"]
    assert result["model"]["name"] == TEST_CLASSIFIER
    assert result["model"]["version"] == "0.0.1"
    assert len(result["model"]["sha256"]) == 64
    assert "not for clinical use" in result["model"]["disclaimer"]
    [finding] = result["findings"]
    assert finding["label"] == "nodule" and 0.0 <= finding["probability"] <= 1.0
    # No lung model in this test set-up: the region table is the labelled grid.
    assert [r["name"] for r in result["regions"]][:2] == ["grid row 1 col 1", "grid row 1 col 2"]
    assert len(result["regions"]) == 9
    assert {"decode", "preprocess", "classify", "explain_gradcam", "dicom_outputs"} <= set(
        result["timings_ms"]
    )
    assert set(result["outputs"]) == {
        "secondary_capture",
        "probability_map",
        "gradcam_map",
        "measurement_report",
    }
    assert result["sop_instance_uid"] == ds.SOPInstanceUID
    bias = result["bias"]
    assert bias["method"] == "gradcam" and bias["relevant_region"] == "body"  # no lung model
    assert set(bias["metrics"]) >= {"relevant_share", "border_share", "peak"}
    assert isinstance(bias["flagged"], bool) and bias["flagged"] == bool(bias["flags"])


def test_filing_the_results_writes_their_access_log_rows(
    api: TestClient, tokens: dict[Role, str], runtime: Runtime
) -> None:
    ds, queued, result = analysed_on_arrival(api, tokens)
    assert result["status"] == "done", result["failure_reason"]
    with runtime.session_factory() as session:
        rows = session.scalars(
            select(AccessLogEntry).where(AccessLogEntry.action == "analysis.output")
        ).all()
    assert sorted(str(r.sop_instance_uid) for r in rows) == sorted(result["outputs"].values())
    assert {(r.username, r.request_id, r.study_instance_uid) for r in rows} == {
        ("system:analysis", queued["id"], ds.StudyInstanceUID)
    }


def picture(api: TestClient, token: str, analysis_id: str, kind: str, path: str) -> Any:
    """GET one of an analysis's pictures: ``path`` is "overlays" or "composite"."""
    return api.get(f"/api/v1/analyses/{analysis_id}/{path}/{kind}.png", headers=bearer(token))


def test_overlays_are_rgba_at_the_image_size_and_composites_rgb(
    api: TestClient, tokens: dict[Role, str]
) -> None:
    _, analysis, done = analysed_on_arrival(api, tokens)
    token = tokens[Role.CLINICIAN]
    assert set(done["overlays"]) == {"gradcam", "probability"}
    for kind in done["overlays"]:
        response = picture(api, token, analysis["id"], kind, "overlays")
        assert response.status_code == 200
        image = Image.open(io.BytesIO(response.content))
        assert image.mode == "RGBA" and image.size == (80, 96)
        composite = picture(api, token, analysis["id"], kind, "composite")
        assert Image.open(io.BytesIO(composite.content)).size == (80, 96)
    missing = picture(api, token, analysis["id"], "occlusion", "overlays")
    assert missing.status_code == 404
    assert missing.json()["detail"] == (
        f"analysis {analysis['id']} has no occlusion overlay; it has: probability, gradcam"
    )


def test_an_overlay_whose_map_is_gone_says_so(
    api: TestClient, tokens: dict[Role, str], analysis_settings: Settings
) -> None:
    """A results folder emptied by hand (or lost) is not 'no such overlay'."""
    _, analysis, done = analysed_on_arrival(api, tokens)
    assert done["status"] == "done"
    shutil.rmtree(analysis_dir(analysis_settings.results_path, uuid.UUID(analysis["id"])))
    for path in ("overlays", "composite"):
        gone = picture(api, tokens[Role.CLINICIAN], analysis["id"], "gradcam", path)
        assert gone.status_code == 404
        assert gone.json()["detail"] == (
            f"analysis {analysis['id']}'s gradcam map is missing from the results folder; "
            "tell an admin"
        )


def test_dicom_outputs_join_the_source_study_and_read_back(
    api: TestClient, tokens: dict[Role, str]
) -> None:
    ds, _, done = analysed_on_arrival(api, tokens)
    found = api.get(
        "/dicomweb/instances",
        params={"StudyInstanceUID": ds.StudyInstanceUID},
        headers=bearer(tokens[Role.CLINICIAN]),
    ).json()
    found_uids = {item["00080018"]["Value"][0] for item in found}
    assert set(done["outputs"].values()) | {ds.SOPInstanceUID} == found_uids
    sr_uid = done["outputs"]["measurement_report"]
    [sr_series] = [
        item["0020000E"]["Value"][0] for item in found if item["00080018"]["Value"][0] == sr_uid
    ]
    body = api.get(
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{sr_series}/instances/{sr_uid}",
        headers=bearer(tokens[Role.CLINICIAN]),
    )
    assert body.status_code == 200
    assert b"vigil-test-classifier" in body.content


def test_requests_are_idempotent_per_instance_model_and_methods(
    api: TestClient, tokens: dict[Role, str]
) -> None:
    ds = make_cr(rows=64, columns=64, BodyPartExamined="HAND")  # not analysed on arrival
    stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)])
    assert analyses_of(api, tokens[Role.CLINICIAN], ds.StudyInstanceUID) == []
    url = f"/api/v1/studies/{ds.StudyInstanceUID}/analyses"
    first = api.post(url, headers=bearer(tokens[Role.INTEGRATION]))
    assert first.status_code == 202, first.text
    again = api.post(url, json={"methods": ["gradcam"]}, headers=bearer(tokens[Role.INTEGRATION]))
    [a], [b] = first.json()["analyses"], again.json()["analyses"]
    assert a["analysis_id"] == b["analysis_id"]
    assert a["created"] and not b["created"]
    other = api.post(
        url, json={"methods": ["gradcampp", "gradcam"]}, headers=bearer(tokens[Role.INTEGRATION])
    ).json()
    assert other["methods"] == ["gradcam", "gradcampp"]
    assert other["analyses"][0]["analysis_id"] != a["analysis_id"]
    done = wait_done(api, tokens[Role.CLINICIAN], other["analyses"][0]["analysis_id"])
    assert set(done["overlays"]) == {"gradcam", "gradcampp", "probability"}


def test_a_corrupt_image_fails_alone_and_the_rest_of_the_study_completes(
    api: TestClient, tokens: dict[Role, str], runtime: Runtime
) -> None:
    study, series = generate_uid(), generate_uid()
    good = make_cr(study_uid=study, series_uid=series, rows=64, columns=64, seed=1)
    bad = make_cr(study_uid=study, series_uid=series, rows=64, columns=64, seed=2)
    bad.InstanceNumber = 2
    stow(api, tokens[Role.INTEGRATION], [to_bytes(good), to_bytes(bad)])
    for analysis in analyses_of(api, tokens[Role.CLINICIAN], study):
        wait_done(api, tokens[Role.CLINICIAN], analysis["id"])
    # The disk rots under one file; a new request must fail that image alone.
    [stored_bad] = list(runtime.archive.root.rglob(f"{bad.SOPInstanceUID}.dcm"))
    stored_bad.write_bytes(stored_bad.read_bytes()[:600])
    answer = api.post(
        f"/api/v1/studies/{study}/analyses",
        json={"methods": ["gradcampp"]},
        headers=bearer(tokens[Role.INTEGRATION]),
    ).json()
    results = {
        item["sop_instance_uid"]: wait_done(api, tokens[Role.CLINICIAN], item["analysis_id"])
        for item in answer["analyses"]
        if item["analysis_id"]
    }
    # The first analyses' own outputs (SC, maps, SR) are in the study too, and are skipped.
    skipped = [item["skipped"] for item in answer["analyses"] if not item["analysis_id"]]
    assert len(skipped) == 8
    assert all("not a projection radiograph" in reason for reason in skipped)
    assert results[good.SOPInstanceUID]["status"] == "done"
    assert results[bad.SOPInstanceUID]["status"] == "failed"
    assert "cannot be decoded" in results[bad.SOPInstanceUID]["failure_reason"]


def test_an_image_whose_file_is_gone_fails_with_a_reason_that_names_no_server_path(
    api: TestClient, tokens: dict[Role, str], runtime: Runtime
) -> None:
    cr = make_cr(rows=64, columns=64, seed=3)
    stow(api, tokens[Role.INTEGRATION], [to_bytes(cr)])
    for analysis in analyses_of(api, tokens[Role.CLINICIAN], cr.StudyInstanceUID):
        wait_done(api, tokens[Role.CLINICIAN], analysis["id"])
    [stored] = list(runtime.archive.root.rglob(f"{cr.SOPInstanceUID}.dcm"))
    stored.unlink()
    answer = api.post(
        f"/api/v1/studies/{cr.StudyInstanceUID}/analyses",
        json={"methods": ["gradcampp"]},
        headers=bearer(tokens[Role.INTEGRATION]),
    ).json()
    [requested] = [a for a in answer["analyses"] if a["sop_instance_uid"] == cr.SOPInstanceUID]
    failed = wait_done(api, tokens[Role.CLINICIAN], requested["analysis_id"])
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == (
        "the instance's file is missing from the archive; tell an admin"
    )
    assert str(runtime.archive.root) not in failed["failure_reason"]
    overlay = picture(api, tokens[Role.CLINICIAN], failed["id"], "gradcampp", "overlays")
    assert overlay.status_code == 404
    assert overlay.json()["detail"] == (
        f"analysis {failed['id']} failed, so it has no images: {failed['failure_reason']}"
    )


@pytest.mark.parametrize(
    ("study", "body", "status", "detail"),
    [
        ("1.2.3.4", None, 404, "no study 1.2.3.4"),
        ("not-a-uid", None, 400, "not a valid UID"),
        (None, {"model": "no-such-model"}, 404, "no model called no-such-model"),
        (None, {"methods": ["xray-vision"]}, 400, "unknown explanation method"),
        (None, {"methods": []}, 400, "at least one explanation method"),
        (None, {"colour": "blue"}, 422, "colour"),
    ],
)
def test_bad_requests_get_a_reason(
    api: TestClient,
    tokens: dict[Role, str],
    study: str | None,
    body: dict[str, Any] | None,
    status: int,
    detail: str,
) -> None:
    if study is None:
        ds = make_cr(rows=64, columns=64)
        stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)])
        study = ds.StudyInstanceUID
    response = api.post(
        f"/api/v1/studies/{study}/analyses", json=body, headers=bearer(tokens[Role.INTEGRATION])
    )
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_a_study_without_analysable_images_is_refused(
    api: TestClient, tokens: dict[Role, str]
) -> None:
    ds = make_cr(rows=16, columns=16)
    stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)])
    response = api.post(
        f"/api/v1/studies/{ds.StudyInstanceUID}/analyses", headers=bearer(tokens[Role.INTEGRATION])
    )
    assert response.status_code == 400
    assert "image too small" in response.json()["detail"]


def test_outputs_of_the_rg1_chest_cr_are_valid_and_the_right_size(
    api: TestClient, tokens: dict[Role, str]
) -> None:
    from tests.factories import rg1_files

    path = rg1_files()["RG1_UNCR"]
    source = pydicom.dcmread(path)
    stow(api, tokens[Role.INTEGRATION], [path.read_bytes()])
    [analysis] = analyses_of(api, tokens[Role.CLINICIAN], source.StudyInstanceUID)
    done = wait_done(api, tokens[Role.CLINICIAN], analysis["id"], timeout=120)
    assert done["status"] == "done", done["failure_reason"]
    overlay = api.get(
        f"/api/v1/analyses/{analysis['id']}/overlays/probability.png",
        headers=bearer(tokens[Role.CLINICIAN]),
    )
    assert Image.open(io.BytesIO(overlay.content)).size == (source.Columns, source.Rows)
    assert np.isfinite([r["probability"] for r in done["regions"]]).all()
    # The outputs were indexed from the data sets in memory: the metadata is the files'.
    runtime = api.app.state.runtime  # type: ignore[attr-defined]
    with runtime.session_factory() as session:
        for uid in done["outputs"].values():
            instance = get_instance(session, uid)
            assert instance is not None
            stored = parse_instance(runtime.archive.path(instance.file_path), require_image=False)
            assert instance.dicom_json == stored.dicom_json, uid


def test_overlay_images_missing_on_disk_are_drawn_on_request(
    api: TestClient, tokens: dict[Role, str], analysis_settings: Settings
) -> None:
    _, analysis, _ = analysed_on_arrival(api, tokens)
    folder = analysis_settings.results_path / analysis["id"]
    for png in folder.glob("*.png"):
        png.unlink()
    response = api.get(
        f"/api/v1/analyses/{analysis['id']}/composite/gradcam.png",
        headers=bearer(tokens[Role.CLINICIAN]),
    )
    assert response.status_code == 200
    assert (folder / "composite-gradcam.png").is_file()


def test_outputs_over_the_size_limit_fail_the_analysis_with_the_reason_and_leave_no_files(
    analysis_settings: Settings, tokens: dict[Role, str], runtime: Runtime
) -> None:
    # The pictures are prepared in the helper process, the report here: either way a refused
    # object fails the analysis with the archive's reason, and no prepared file is left.
    small = analysis_settings.model_copy(update={"max_instance_bytes": 30_000})
    with TestClient(create_app(small)) as client:
        ds, _, result = analysed_on_arrival(client, tokens)
    assert result["status"] == "failed"
    assert "could not be filed" in result["failure_reason"]
    assert "over the limit of 30000 bytes" in result["failure_reason"]
    assert list(runtime.archive.incoming.iterdir()) == []
    stored = list(runtime.archive.root.rglob("*.dcm"))
    assert [p.stem for p in stored] == [ds.SOPInstanceUID]  # the source image alone


def test_an_analysis_that_stops_before_filing_leaves_no_prepared_files(
    api: TestClient, tokens: dict[Role, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.analysis import outputs

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the report could not be built")

    monkeypatch.setattr(outputs, "structured_report", broken)
    ds, _, result = analysed_on_arrival(api, tokens)
    assert result["status"] == "failed" and "internal error" in result["failure_reason"]
    assert list(runtime.archive.incoming.iterdir()) == []  # the helper's pictures discarded
    assert [p.stem for p in runtime.archive.root.rglob("*.dcm")] == [ds.SOPInstanceUID]


def test_a_running_job_sees_whether_other_analyses_wait() -> None:
    gate = threading.Event()
    seen: list[bool] = []

    def run(_analysis_id: uuid.UUID) -> None:
        gate.wait(10)
        seen.append(jobs.others_waiting())

    jobs = InProcessJobs(run)
    try:
        jobs.enqueue_analysis(uuid.uuid4())
        jobs.enqueue_analysis(uuid.uuid4())
        gate.set()
        assert jobs.wait_idle(10)
    finally:
        jobs.close()
    assert seen == [True, False]


def test_with_analyses_waiting_overlays_are_drawn_on_request_not_ahead(
    api: TestClient, tokens: dict[Role, str], analysis_settings: Settings
) -> None:
    # Drawing a 2k image's overlays takes about a second: queued analyses come first.
    study = generate_uid()
    images = [make_cr(study_uid=study, rows=64, columns=64, seed=i) for i in range(3)]
    assert stow(api, tokens[Role.INTEGRATION], [to_bytes(ds) for ds in images]).status_code == 200
    queued = analyses_of(api, tokens[Role.CLINICIAN], study)
    assert len(queued) == 3
    for analysis in queued:
        assert wait_done(api, tokens[Role.CLINICIAN], analysis["id"])["status"] == "done"
    assert api.app.state.analysis.jobs.wait_idle(60)  # type: ignore[attr-defined]  # drawn too
    drawn = {
        a["id"]: (analysis_settings.results_path / a["id"] / "composite-gradcam.png").is_file()
        for a in queued
    }
    assert sorted(drawn.values()) == [False, False, True]  # only the last had the queue empty
    first = next(i for i, ahead in drawn.items() if not ahead)
    response = api.get(
        f"/api/v1/analyses/{first}/composite/gradcam.png", headers=bearer(tokens[Role.CLINICIAN])
    )
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


def test_a_store_need_not_wait_for_an_overlay_being_drawn(
    api: TestClient,
    tokens: dict[Role, str],
    analysis_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Drawing on request takes about a second for a full-size radiograph; on SQLite a request
    # that drew inside its writing transaction would hold every store up that long.
    _, analysis, _ = analysed_on_arrival(api, tokens)
    api.app.state.analysis.jobs.wait_idle()  # type: ignore[attr-defined]
    for png in (analysis_settings.results_path / analysis["id"]).glob("*.png"):
        png.unlink()
    drawing, finish = threading.Event(), threading.Event()
    real_draw = overlay_images.draw_overlay

    def slow_draw(*args: Any, **kwargs: Any) -> None:
        drawing.set()
        assert finish.wait(timeout=30), "the store never came through"
        real_draw(*args, **kwargs)

    monkeypatch.setattr(overlay_images, "draw_overlay", slow_draw)
    with ThreadPoolExecutor(max_workers=1) as pool:
        drawn = pool.submit(
            api.get,
            f"/api/v1/analyses/{analysis['id']}/composite/gradcam.png",
            headers=bearer(tokens[Role.CLINICIAN]),
        )
        assert drawing.wait(timeout=30)
        other = make_cr(rows=96, columns=80)
        response = stow(api, tokens[Role.INTEGRATION], [to_bytes(other)])
        assert response.status_code == 200, response.text
        finish.set()
        assert drawn.result(timeout=30).status_code == 200
