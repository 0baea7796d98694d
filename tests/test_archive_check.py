"""`vigil archive check`: lost, changed and stray files are found; only old strays that
Vigil filed are removed, and never a file a stored instance needs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from click.testing import CliRunner
from pydicom.uid import generate_uid
from sqlalchemy import select

from service.cli.main import cli
from service.dicom.archive_check import check_archive
from service.dicom.store import StoreStatus, store_received
from service.orm import AccessLogEntry
from service.runtime import Runtime
from service.settings import Settings, get_settings
from tests.factories import make_cr, to_bytes
from tests.test_ingest_atomicity import received_file
from tests.test_stow import archive_files, instance_count
from tests.test_tokens_at_rest import cli_env

AN_HOUR_AGO = time.time() - 2 * 3600


def _store(runtime: Runtime, count: int) -> list[Path]:
    for seed in range(count):
        outcome = store_received(
            session_factory=runtime.session_factory,
            archive=runtime.archive,
            received=received_file(runtime, to_bytes(make_cr(seed=seed))),
        )
        assert outcome.status is StoreStatus.STORED
    return archive_files(runtime)


def _relative(runtime: Runtime, path: Path) -> str:
    return path.relative_to(runtime.archive.root).as_posix()


def _stray(runtime: Runtime, relative: str, *, old: bool) -> Path:
    path = runtime.archive.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"left by a crash")
    if old:
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    return path


def test_a_whole_archive_has_nothing_to_report(runtime: Runtime) -> None:
    _store(runtime, 2)
    (runtime.archive.incoming / "upload.part").write_bytes(b"in progress")  # not the archive's
    report = check_archive(runtime.session_factory, runtime.archive, verify=True)
    assert (report.rows, report.files) == (2, 2)
    assert (report.missing, report.changed, report.strays, report.removed) == ([], [], [], [])
    assert not report.data_lost


def test_a_missing_file_is_lost_data_and_a_changed_one_is_found_when_verifying(
    runtime: Runtime,
) -> None:
    gone, changed, intact = _store(runtime, 3)
    gone.unlink()
    changed.write_bytes(changed.read_bytes()[:-2] + b"\x00\x01")  # same size, other bytes
    quick = check_archive(runtime.session_factory, runtime.archive)
    assert quick.missing == [_relative(runtime, gone)]
    assert quick.changed == []  # not read without --verify
    assert quick.data_lost
    verified = check_archive(runtime.session_factory, runtime.archive, verify=True)
    assert verified.missing == [_relative(runtime, gone)]
    assert verified.changed == [_relative(runtime, changed)]
    assert _relative(runtime, intact) not in verified.changed


def test_only_old_strays_vigil_filed_are_removed(runtime: Runtime) -> None:
    [stored] = _store(runtime, 1)
    study, series = generate_uid(), generate_uid()
    old = _stray(runtime, f"{study}/{series}/{generate_uid()}.dcm", old=True)
    young = _stray(runtime, f"{study}/{series}/{generate_uid()}.dcm", old=False)
    foreign = _stray(runtime, "notes/readme.txt", old=True)
    # The stored instance's SOP Instance UID filed under another study: a row holds the
    # instance, so its file is not Vigil's to delete even though no row points at this path.
    held = _stray(runtime, f"{generate_uid()}/{series}/{stored.stem}.dcm", old=True)
    report = check_archive(runtime.session_factory, runtime.archive, remove_strays=True)
    strays = sorted(_relative(runtime, p) for p in (old, young, foreign, held))
    assert report.strays == strays
    assert report.removed == [_relative(runtime, old)]
    assert not old.exists()
    assert young.exists() and foreign.exists() and held.exists()
    assert stored.exists()
    assert report.missing == [] and instance_count(runtime) == 1


def test_the_cli_reports_lost_data_with_status_1_and_logs_the_check(
    settings: Settings, runtime: Runtime
) -> None:
    files = _store(runtime, 2)

    def run_check(*options: str):
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli, ["archive", "check", *options], env=cli_env(settings))
        finally:
            get_settings.cache_clear()

    clean = run_check("--verify")
    assert clean.exit_code == 0, clean.output
    assert "2 stored instances checked and re-hashed; 2 files in the archive" in clean.output
    assert "0 stored instances whose file is missing (lost data)" in clean.output
    files[0].unlink()
    lost = run_check()
    assert lost.exit_code == 1, lost.output
    assert "1 stored instances whose file is missing (lost data)" in lost.output
    assert f"missing: {_relative(runtime, files[0])}" in lost.output
    with runtime.session_factory() as session:
        logged = session.scalars(
            select(AccessLogEntry).where(AccessLogEntry.action == "archive.check")
        ).all()
    assert [entry.result_count for entry in logged] == [2, 2]
    assert all(entry.username.startswith("cli:") for entry in logged)


def test_vigils_own_folders_inside_the_archive_are_not_strays(runtime: Runtime) -> None:
    # docker-compose.yml's layout: VIGIL_VAR_DIR (database, results, reports) in the archive.
    _store(runtime, 1)
    own = [runtime.archive.root / "var", runtime.archive.root / "var" / "results"]
    for relative in ("var/vigil.db", "var/results/a1/map-gradcam.npy", "var/reports/r1/x.csv"):
        _stray(runtime, relative, old=True)
    foreign = _stray(runtime, "notes/readme.txt", old=True)
    report = check_archive(
        runtime.session_factory, runtime.archive, remove_strays=True, own_folders=own
    )
    assert (report.rows, report.files) == (1, 2)
    assert report.strays == ["notes/readme.txt"] and report.removed == []  # not Vigil's shape
    assert foreign.exists() and (runtime.archive.root / "var" / "vigil.db").exists()
