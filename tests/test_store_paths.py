"""One received instance is indexed without a session (see ``store._index_and_file``): on
SQLite's driver, on a PostgreSQL connection. Its rows, and the patient, study and series a
new series creates, must be exactly what a session writes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.auth.access_log import record_access
from service.auth.roles import Role
from service.auth.service import Principal
from service.db import Executes, session_scope
from service.dicom import store as store_module
from service.dicom.store import (
    StoreOutcome,
    StoreStatus,
    store_received,
    store_received_together,
)
from service.orm import AccessLogEntry, Instance, Patient, Series, Study
from service.runtime import Runtime
from tests.factories import make_cr, to_bytes
from tests.test_ingest_atomicity import received_file

OPERATOR = Principal(user_pk=None, username="operator", role=Role.ADMIN)


def _record(rows: Executes, outcome: StoreOutcome) -> None:
    record_access(
        session=rows,
        principal=OPERATOR,
        action="dicom.store",
        status_code=200,
        client_addr="cli",
        request_id="req-7",
        study_instance_uid=outcome.study_instance_uid,
        series_instance_uid=outcome.series_instance_uid,
        sop_instance_uid=outcome.sop_instance_uid,
    )


def _store(runtime: Runtime, data: bytes) -> StoreOutcome:
    """Store one file as a request does, its access-log row recorded by ``_record``."""
    return store_received(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=received_file(runtime, data),
        audit=_record,
    )


def _row(runtime: Runtime, sop_instance_uid: str) -> dict[str, Any]:
    with runtime.session_factory() as session:
        instance = session.scalars(
            select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
        ).one()
        return {c.key: getattr(instance, c.key) for c in Instance.__table__.columns}


def _count_sessions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sessions: list[str] = []
    real_scope = session_scope

    @contextmanager
    def counted_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
        sessions.append("opened")
        with real_scope(factory) as session:
            yield session

    monkeypatch.setattr(store_module, "session_scope", counted_scope)
    return sessions


def test_an_instance_of_a_known_series_is_stored_as_a_session_stores_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = _count_sessions(monkeypatch)
    first = make_cr(seed=3, ViewPosition="PA")
    second = make_cr(
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
        seed=3,
        ViewPosition="PA",
    )
    extra = make_cr(study_uid=first.StudyInstanceUID, series_uid=first.SeriesInstanceUID, seed=4)
    in_session_outcome, _ = store_received_together(  # two at once: through a session
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=[received_file(runtime, to_bytes(ds)) for ds in (first, extra)],
        audit=_record,
    )
    stored = [
        in_session_outcome,
        store_received(
            session_factory=runtime.session_factory,
            archive=runtime.archive,
            received=received_file(runtime, to_bytes(second)),
            audit=_record,
        ),
    ]
    assert [o.status for o in stored] == [StoreStatus.STORED, StoreStatus.STORED]
    # The second, one instance, needs no session.
    assert len(sessions) == 1

    in_session, on_driver = (
        _row(runtime, first.SOPInstanceUID),
        _row(runtime, second.SOPInstanceUID),
    )
    for differs in ("id", "sop_instance_uid", "file_path", "created_at"):
        assert in_session.pop(differs) != on_driver.pop(differs)
    assert in_session.pop("sha256") == hashlib.sha256(to_bytes(first)).hexdigest()
    assert on_driver.pop("sha256") == hashlib.sha256(to_bytes(second)).hexdigest()
    # Random UIDs of different lengths: the files' sizes may differ by a few bytes.
    assert in_session.pop("file_size") == len(to_bytes(first))
    assert on_driver.pop("file_size") == len(to_bytes(second))
    assert in_session.pop("dicom_json").pop("00080018") == {
        "vr": "UI",
        "Value": [first.SOPInstanceUID],
    }
    assert on_driver.pop("dicom_json").pop("00080018") == {
        "vr": "UI",
        "Value": [second.SOPInstanceUID],
    }
    assert in_session == on_driver
    assert on_driver["view_position"] == "PA"
    assert runtime.archive.path(_row(runtime, second.SOPInstanceUID)["file_path"]).read_bytes() == (
        to_bytes(second)
    )

    with runtime.session_factory() as session:
        logged = session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.at)).all()
    assert [(e.action, e.sop_instance_uid, e.request_id, e.username) for e in logged] == [
        ("dicom.store", first.SOPInstanceUID, "req-7", "operator"),
        ("dicom.store", extra.SOPInstanceUID, "req-7", "operator"),
        ("dicom.store", second.SOPInstanceUID, "req-7", "operator"),
    ]


def test_a_resend_and_a_conflict_in_a_known_series_leave_the_stored_copy(
    runtime: Runtime,
) -> None:
    first = make_cr(seed=1)
    changed = make_cr(
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
        sop_uid=first.SOPInstanceUID,
        seed=2,
    )

    assert _store(runtime, to_bytes(first)).status is StoreStatus.STORED
    assert _store(runtime, to_bytes(first)).status is StoreStatus.ALREADY_STORED
    conflict = _store(runtime, to_bytes(changed))
    assert conflict.status is StoreStatus.FAILED
    assert "already stored with different content" in conflict.reason
    row = _row(runtime, first.SOPInstanceUID)
    assert runtime.archive.path(row["file_path"]).read_bytes() == to_bytes(first)
    with session_scope(runtime.session_factory) as session:
        actions = session.scalars(select(AccessLogEntry.action)).all()
    assert actions == ["dicom.store", "dicom.store"]  # the refused one logs nothing here


def _columns(runtime: Runtime, model: Any, key: Any, value: str) -> dict[str, Any]:
    with runtime.session_factory() as session:
        row = session.scalars(select(model).where(key == value)).one()
        return {c.key: getattr(row, c.key) for c in model.__table__.columns}


def test_a_new_series_is_created_as_a_session_creates_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first instance of a series, of a new study of a new patient: on SQLite all of it
    on the driver, each row what a session writes for the same attributes."""
    sessions = _count_sessions(monkeypatch)
    attributes: dict[str, Any] = {
        "patient_name": "Roe^Ann",
        "StudyDescription": "Chest PA",
        "AccessionNumber": "ACC-9",
        "Manufacturer": "Acme",
        "InstitutionName": "General",
    }
    on_driver = make_cr(patient_id="PID-DRIVER", seed=5, **attributes)
    in_session = [make_cr(patient_id="PID-SESSION", seed=6, **attributes)]
    in_session.append(
        make_cr(
            patient_id="PID-SESSION",
            study_uid=in_session[0].StudyInstanceUID,
            series_uid=in_session[0].SeriesInstanceUID,
            seed=7,
            **attributes,
        )
    )
    assert store_received(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=received_file(runtime, to_bytes(on_driver)),
        audit=_record,
    ).ok
    assert len(sessions) == 0
    outcomes = store_received_together(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=[received_file(runtime, to_bytes(ds)) for ds in in_session],
        audit=_record,
    )
    assert all(o.ok for o in outcomes)
    assert len(sessions) == 1  # two at once: through a session

    rows = []
    for ds in (on_driver, in_session[0]):
        patient = _columns(runtime, Patient, Patient.patient_id, ds.PatientID)
        study = _columns(runtime, Study, Study.study_instance_uid, ds.StudyInstanceUID)
        series = _columns(runtime, Series, Series.series_instance_uid, ds.SeriesInstanceUID)
        assert study["patient_pk"] == patient["id"]
        assert series["study_pk"] == study["id"]
        assert study["created_at"] is not None and study["updated_at"] is not None
        rows.append((patient, study, series))
    (driver_patient, driver_study, driver_series), (patient, study, series) = rows
    differing = ("id", "created_at", "updated_at", "patient_pk", "study_pk")
    for driver_row, session_row, uid in (
        (driver_patient, patient, "patient_id"),
        (driver_study, study, "study_instance_uid"),
        (driver_series, series, "series_instance_uid"),
    ):
        for key in (*differing, uid):
            driver_row.pop(key, None)
            session_row.pop(key, None)
        assert driver_row == session_row
    assert driver_patient["patient_name"] == "Roe^Ann"
    assert driver_study["accession_number"] == "ACC-9"
    assert driver_series["manufacturer"] == "Acme"


def test_a_resend_conflicts_with_a_stored_copy_whose_pixels_cannot_be_decoded(
    runtime: Runtime,
) -> None:
    # A copy stored before ingest checked pixel descriptions may not decode: what it shows
    # is unknown, so a resend with other bytes is a conflict and the stored copy stays.
    first = make_cr(seed=1)
    uids = {
        "study_uid": first.StudyInstanceUID,
        "series_uid": first.SeriesInstanceUID,
        "sop_uid": first.SOPInstanceUID,
    }

    assert _store(runtime, to_bytes(first)).status is StoreStatus.STORED
    stored = runtime.archive.path(_row(runtime, first.SOPInstanceUID)["file_path"])
    undecodable = to_bytes(make_cr(seed=1, BitsStored=240, **uids))
    stored.write_bytes(undecodable)
    conflict = _store(runtime, to_bytes(make_cr(seed=2, **uids)))
    assert conflict.status is StoreStatus.FAILED
    assert "already stored with different content" in conflict.reason
    assert stored.read_bytes() == undecodable
