"""On SQLite an instance of a series already stored is indexed on the driver, not in a
session (see ``store._index_and_file``); it must be stored exactly as a session stores it."""

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
from service.dicom.store import StoreOutcome, StoreStatus, store_received
from service.orm import AccessLogEntry, Instance
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


def _row(runtime: Runtime, sop_instance_uid: str) -> dict[str, Any]:
    with runtime.session_factory() as session:
        instance = session.scalars(
            select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
        ).one()
        return {c.key: getattr(instance, c.key) for c in Instance.__table__.columns}


def test_an_instance_of_a_known_series_is_stored_as_a_session_stores_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite = runtime.engine.dialect.name == "sqlite"
    sessions: list[str] = []
    real_scope = session_scope

    @contextmanager
    def counted_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
        sessions.append("opened")
        with real_scope(factory) as session:
            yield session

    monkeypatch.setattr(store_module, "session_scope", counted_scope)
    first = make_cr(seed=3, ViewPosition="PA")
    second = make_cr(
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
        seed=3,
        ViewPosition="PA",
    )
    stored = [
        store_received(
            session_factory=runtime.session_factory,
            archive=runtime.archive,
            received=received_file(runtime, to_bytes(ds)),
            audit=_record,
        )
        for ds in (first, second)
    ]
    assert [o.status for o in stored] == [StoreStatus.STORED, StoreStatus.STORED]
    # The series' first instance creates patient, study and series in a session; the second
    # needs none on SQLite.
    assert len(sessions) == (1 if sqlite else 2)

    in_session, on_driver = (
        _row(runtime, first.SOPInstanceUID),
        _row(runtime, second.SOPInstanceUID),
    )
    for differs in ("id", "sop_instance_uid", "file_path", "created_at"):
        assert in_session.pop(differs) != on_driver.pop(differs)
    assert in_session.pop("sha256") == hashlib.sha256(to_bytes(first)).hexdigest()
    assert on_driver.pop("sha256") == hashlib.sha256(to_bytes(second)).hexdigest()
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

    def store(data: bytes) -> StoreOutcome:
        return store_received(
            session_factory=runtime.session_factory,
            archive=runtime.archive,
            received=received_file(runtime, data),
            audit=_record,
        )

    assert store(to_bytes(first)).status is StoreStatus.STORED
    assert store(to_bytes(first)).status is StoreStatus.ALREADY_STORED
    conflict = store(to_bytes(changed))
    assert conflict.status is StoreStatus.FAILED
    assert "already stored with different content" in conflict.reason
    row = _row(runtime, first.SOPInstanceUID)
    assert runtime.archive.path(row["file_path"]).read_bytes() == to_bytes(first)
    with session_scope(runtime.session_factory) as session:
        actions = session.scalars(select(AccessLogEntry.action)).all()
    assert actions == ["dicom.store", "dicom.store"]  # the refused one logs nothing here
