"""QIDO-RS latency at scale: 100,000 indexed instances, searched the ways a viewer searches.

Not a test (pytest does not collect it). Run it by hand from the repository root:

    .venv/bin/python tests/benchmarks/qido_scale.py                 # fresh SQLite file
    .venv/bin/python tests/benchmarks/qido_scale.py --database-url \\
        postgresql+psycopg://postgres@127.0.0.1:5432/qido_bench --reset

Rows go straight into the index (Core bulk inserts, no files in the archive): QIDO reads only
the index and the stored DICOM JSON. Each search then goes through the whole app (token check,
query, JSON, access-log commit) with FastAPI's TestClient, and the median and 95th
percentile latency of each kind of search is printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, inspect, select
from sqlalchemy.orm import Session

from service.app import create_app
from service.auth import service as auth_service
from service.auth.roles import Role
from service.db import create_db_engine, create_session_factory, session_scope
from service.migrate import downgrade, upgrade
from service.orm import Instance, Patient, Series, Study
from service.settings import Environment, Settings

FAMILY = ("Smith", "Jones", "Garcia", "Muller", "Rossi", "Dubois", "Nowak", "Tanaka", "Silva",
          "Kowalski", "Johansson", "Novak", "Horvat", "Ivanov", "Papadopoulos", "Murphy", "Kim",
          "Nguyen", "Haddad", "Okafor")  # fmt: skip
GIVEN = ("Anna", "John", "Maria", "Peter", "Eva", "Ali", "Mei", "Lars", "Ines", "Tom")
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
BATCH = 5_000


@dataclass(frozen=True)
class Corpus:
    patient_ids: list[str]
    studies: list[tuple[str, str]]  # (study UID, its one series UID)
    sop_uids: list[str]


def populate(session: Session, *, studies: int, per_series: int, seed: int) -> Corpus:
    """Insert patients (two studies each), one series per study and its instances."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    first_day = date(2005, 1, 1)
    patients: list[dict[str, Any]] = []
    for p in range(studies // 2):
        name = f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}"
        patients.append({
            "id": uuid.uuid4(), "patient_id": f"P{p:07d}", "issuer_of_patient_id": "",
            "patient_name": name.upper() if p % 3 == 0 else name, "patient_sex": rng.choice("MF"),
            "patient_birth_date": f"{rng.randint(1930, 2010)}0101", "created_at": now,
        })  # fmt: skip
    corpus = Corpus([p["patient_id"] for p in patients], [], [])
    study_rows, series_rows, instance_rows = [], [], []
    for s in range(studies):
        study_uid, series_uid = f"2.25.1{s:08d}", f"2.25.2{s:08d}"
        corpus.studies.append((study_uid, series_uid))
        study_pk, series_pk = uuid.uuid4(), uuid.uuid4()
        day = first_day + timedelta(days=rng.randint(0, 7300))
        study_rows.append({
            "id": study_pk, "study_instance_uid": study_uid,
            "patient_pk": patients[s % len(patients)]["id"], "study_date": day.strftime("%Y%m%d"),
            "study_time": f"{rng.randint(7, 19):02d}{rng.randint(0, 59):02d}00",
            "accession_number": f"A{s:08d}", "study_id": str(s % 1000),
            "study_description": "Chest PA/LAT", "referring_physician_name": "House^Gregory",
            "patient_age": "050Y", "created_at": now, "updated_at": now,
        })  # fmt: skip
        series_rows.append({
            "id": series_pk, "series_instance_uid": series_uid, "study_pk": study_pk,
            "modality": "CR" if s % 4 else "DX", "series_number": 1, "series_description": "",
            "body_part_examined": "CHEST", "manufacturer": "Vendor", "manufacturer_model_name": "X",
            "institution_name": "General", "station_name": "CR01", "created_at": now,
        })  # fmt: skip
        for i in range(per_series):
            sop_uid = f"2.25.3{s:08d}{i:03d}"
            corpus.sop_uids.append(sop_uid)
            instance_rows.append(_instance_row(sop_uid, series_pk, i + 1, now))
    for model, rows in ((Patient, patients), (Study, study_rows), (Series, series_rows),
                        (Instance, instance_rows)):  # fmt: skip
        for start in range(0, len(rows), BATCH):
            session.execute(insert(model.__table__), rows[start : start + BATCH])  # type: ignore[arg-type]
    return corpus


def _instance_row(sop_uid: str, series_pk: uuid.UUID, number: int, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(), "sop_instance_uid": sop_uid, "series_pk": series_pk,
        "sop_class_uid": CR_IMAGE_STORAGE, "instance_number": number, "rows": 2048,
        "columns": 2048, "number_of_frames": 1, "bits_allocated": 16,
        "photometric_interpretation": "MONOCHROME2", "view_position": "PA",
        "transfer_syntax_uid": EXPLICIT_VR_LITTLE_ENDIAN, "file_path": f"bench/{sop_uid}.dcm",
        "file_size": 8_400_000, "sha256": "0" * 64, "created_at": now,
        "dicom_json": {
            "00080016": {"vr": "UI", "Value": [CR_IMAGE_STORAGE]},
            "00080018": {"vr": "UI", "Value": [sop_uid]},
            "00081070": {"vr": "PN", "Value": [{"Alphabetic": "Tech^One"}]},
            "00200013": {"vr": "IS", "Value": [number]},
            "00280010": {"vr": "US", "Value": [2048]},
            "00280011": {"vr": "US", "Value": [2048]},
        },
    }  # fmt: skip


def timed(call: Callable[[], Any], repeat: int) -> list[float]:
    """Return the wall time in milliseconds of each of ``repeat`` calls (after two warm-ups)."""
    for _ in range(2):
        call()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


Search = Callable[[], tuple[str, dict[str, str]]]


def searches(corpus: Corpus, rng: random.Random) -> list[tuple[str, Search]]:
    """Return (label, a function giving a fresh path and parameters for each call)."""

    def patient_id() -> tuple[str, dict[str, str]]:
        return "/studies", {"PatientID": rng.choice(corpus.patient_ids)}

    def patient_name() -> tuple[str, dict[str, str]]:
        # Lower case on purpose: a third of the names are stored upper case.
        pattern = f"{rng.choice(FAMILY).lower()}^{rng.choice(GIVEN)[0]}*"
        return "/studies", {"PatientName": pattern}

    def date_range() -> tuple[str, dict[str, str]]:
        start = date(2005, 1, 1) + timedelta(days=rng.randint(0, 7000))
        end = start + timedelta(days=30)
        return "/studies", {"StudyDate": f"{start:%Y%m%d}-{end:%Y%m%d}"}

    def sop_instance() -> tuple[str, dict[str, str]]:
        return "/instances", {"SOPInstanceUID": rng.choice(corpus.sop_uids)}

    def series_instances() -> tuple[str, dict[str, str]]:
        study, series = rng.choice(corpus.studies)
        return f"/studies/{study}/series/{series}/instances", {}

    def first_page() -> tuple[str, dict[str, str]]:
        return "/studies", {}

    def series_of_patient() -> tuple[str, dict[str, str]]:
        return "/series", {"PatientID": rng.choice(corpus.patient_ids)}

    return [
        ("PatientID exact", patient_id),
        ("PatientName wildcard", patient_name),
        ("StudyDate range (30 days)", date_range),
        ("/instances?SOPInstanceUID", sop_instance),
        ("/studies/{s}/series/{r}/instances", series_instances),
        ("/studies first page (no filter)", first_page),
        ("/series?PatientID", series_of_patient),
    ]


def run_search(
    client: TestClient, headers: dict[str, str], search: Search, repeat: int
) -> tuple[list[float], list[int]]:
    """Return the sorted latencies (ms) of ``repeat`` searches and their result counts."""
    counts: list[int] = []

    def call() -> None:
        path, params = search()
        response = client.get(f"/dicomweb{path}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        counts.append(len(response.json()))

    return sorted(timed(call, repeat)), counts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    parser.add_argument("--reset", action="store_true", help="drop every table there first")
    parser.add_argument("--studies", type=int, default=20_000)
    parser.add_argument("--instances-per-series", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vigil-qido-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'vigil.db'}"
    if args.reset:
        downgrade(url, "base")
    upgrade(url)
    engine = create_db_engine(url)
    factory = create_session_factory(engine)
    with factory() as session:
        if session.scalar(select(func.count()).select_from(Instance)):
            raise SystemExit(f"{inspect(engine).engine.url!r} already holds instances: --reset")
    started = time.perf_counter()
    with session_scope(factory) as session:
        corpus = populate(
            session, studies=args.studies, per_series=args.instances_per_series, seed=args.seed
        )
        _token, secret = auth_service.create_token(session=session, role=Role.INTEGRATION)
    if engine.dialect.name == "postgresql":
        # Autovacuum analyses a table soon after a bulk load; without statistics the planner
        # guesses row counts, picks scans (and JIT-compiles them) and this would time that.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    total = args.studies * args.instances_per_series
    print(f"database: {make_label(url)}; {args.studies} studies, {total} instances inserted "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    settings = Settings(
        environment=Environment.TEST, var_dir=workdir, database_url=url, log_level="WARNING"
    )
    rng = random.Random(args.seed)
    headers = {"Authorization": f"Bearer {secret}", "Accept": "application/dicom+json"}
    print(f"{'search':38} {'median ms':>10} {'p95 ms':>8} {'results':>8}")
    with TestClient(create_app(settings)) as client:
        for label, search in searches(corpus, rng):
            times, counts = run_search(client, headers, search, args.repeat)
            p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
            print(f"{label:38} {statistics.median(times):10.1f} {p95:8.1f} "
                  f"{statistics.median(counts):8.0f}")  # fmt: skip


def make_label(url: str) -> str:
    """Return a database URL fit to print (no password)."""
    return url.split("@")[-1] if "@" in url else url


if __name__ == "__main__":
    main()
