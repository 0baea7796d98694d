"""`vigil ingest`: files, folders and zip files, a progress bar, a summary, safe zips."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from service.cli.main import cli
from service.dicom.store import StoreOutcome, store_received
from service.orm import AccessLogEntry
from service.runtime import Runtime
from service.settings import Settings, get_settings
from tests.factories import make_cr, pydicom_test_file, rg1_files, to_bytes
from tests.test_stow import archive_files, instance_count
from tests.test_tokens_at_rest import cli_env


def ingest(settings: Settings, *paths: Path, extra_env: dict[str, str] | None = None):
    get_settings.cache_clear()
    try:
        env = cli_env(settings) | (extra_env or {})
        return CliRunner().invoke(cli, ["ingest", *map(str, paths)], env=env)
    finally:
        get_settings.cache_clear()


def write_instances(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.dcm"
        path.write_bytes(to_bytes(make_cr(seed=i, rows=32, columns=32)))
        paths.append(path)
    return paths


def test_rg1_files_ingest_through_the_cli(settings: Settings, runtime: Runtime) -> None:
    result = ingest(settings, *rg1_files().values())
    assert result.exit_code == 0, result.output
    assert "3 stored, 1 already stored, 0 failed (of 4)" in result.output
    assert "Ingesting" in result.output
    assert instance_count(runtime) == 3


def test_folder_and_zip_and_rerun_is_idempotent(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    write_instances(tmp_path / "in" / "nested", 3)
    zip_path = tmp_path / "more.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(2):
            zf.writestr(f"study/x{i}.dcm", to_bytes(make_cr(seed=100 + i, rows=32, columns=32)))
    first = ingest(settings, tmp_path / "in", zip_path)
    assert first.exit_code == 0, first.output
    assert "5 stored, 0 already stored, 0 failed (of 5)" in first.output
    again = ingest(settings, tmp_path / "in", zip_path)
    assert "0 stored, 5 already stored, 0 failed (of 5)" in again.output
    assert instance_count(runtime) == 5
    with runtime.session_factory() as session:
        rows = session.scalars(select(AccessLogEntry)).all()
    assert len(rows) == 10
    assert all(r.username.startswith("cli:") and r.client_addr == "cli" for r in rows)


def test_bad_files_are_reported_with_reasons_and_exit_code_1(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    write_instances(tmp_path / "in", 1)
    (tmp_path / "in" / "notes.txt").write_text("not dicom")
    result = ingest(settings, tmp_path / "in", tmp_path / "missing.dcm")
    assert result.exit_code == 1
    assert "1 stored, 0 already stored, 2 failed (of 3)" in result.output
    assert "notes.txt: not a DICOM Part 10 file" in result.output
    assert "missing.dcm: no such file or folder" in result.output


def test_zip_slip_members_are_refused_and_nothing_escapes(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("../../escaped.dcm", to_bytes(make_cr(seed=1, rows=32, columns=32)))
        zf.writestr("/abs/escaped2.dcm", to_bytes(make_cr(seed=2, rows=32, columns=32)))
        zf.writestr("fine/ok.dcm", to_bytes(make_cr(seed=3, rows=32, columns=32)))
    result = ingest(settings, zip_path)
    assert result.exit_code == 1
    assert "1 stored, 0 already stored, 2 failed (of 3)" in result.output
    assert result.output.count("escapes the target folder (zip slip)") == 2
    assert not (tmp_path / "escaped.dcm").exists()
    assert not list(tmp_path.parent.glob("escaped*.dcm"))
    assert instance_count(runtime) == 1


def test_zip_bomb_is_refused_before_extraction(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    zip_path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", to_bytes(make_cr(seed=1, rows=32, columns=32)))
        zf.writestr("zeros.dcm", b"\0" * (50 * 1024 * 1024))
    result = ingest(settings, zip_path)
    assert result.exit_code == 1
    assert "zip bomb" in result.output
    assert "nothing extracted" in result.output
    assert instance_count(runtime) == 0
    assert list(runtime.archive.incoming.iterdir()) == []


def test_zip_over_the_total_size_limit_is_refused(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    zip_path = tmp_path / "big.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.writestr(f"{i}.dcm", to_bytes(make_cr(seed=i, rows=64, columns=64)))
    result = ingest(settings, zip_path, extra_env={"VIGIL_MAX_ZIP_TOTAL_BYTES": "10000"})
    assert result.exit_code == 1
    assert "over the limit of 10000" in result.output
    assert instance_count(runtime) == 0
    assert archive_files(runtime) == []


def test_damaged_zips_are_reported_and_the_other_inputs_ingested(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    def zipped(name: str, members: dict[str, bytes]) -> bytearray:
        with zipfile.ZipFile(tmp_path / name, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, data in members.items():
                zf.writestr(member, data)
        return bytearray((tmp_path / name).read_bytes())

    # A version this zipfile cannot read (the central directory's "version needed": 10.2).
    future = zipped("future.zip", {"a.dcm": to_bytes(make_cr(seed=1, rows=32, columns=32))})
    central = future.index(b"PK\x01\x02")
    future[central + 6 : central + 8] = (102).to_bytes(2, "little")
    (tmp_path / "future.zip").write_bytes(future)
    # A member whose deflate stream is broken (an invalid block type), beside a good one.
    good = to_bytes(make_cr(seed=2, rows=32, columns=32))
    broken = zipped("broken.zip", {"broken.dcm": to_bytes(make_cr(seed=3)), "good.dcm": good})
    data_at = 30 + len("broken.dcm")  # the first local header has no extra field
    broken[data_at : data_at + 16] = b"\xff" * 16
    (tmp_path / "broken.zip").write_bytes(broken)
    result = ingest(settings, tmp_path / "future.zip", tmp_path / "broken.zip")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "future.zip: not a readable zip file: zip file version 10.2" in result.output
    assert "broken.zip!broken.dcm: zip member cannot be read: Error -3" in result.output
    assert "1 stored, 0 already stored, 2 failed (of 3)" in result.output
    assert instance_count(runtime) == 1
    assert list(runtime.archive.incoming.iterdir()) == []


def test_a_named_pipe_or_device_is_refused_unread(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    # Reading either would not end: a pipe waits for a writer, /dev/zero never runs out (it
    # filled the memory before the check); both are refused before they are opened.
    os.mkfifo(tmp_path / "pipe.dcm")
    result = ingest(settings, tmp_path / "pipe.dcm", Path("/dev/zero"))
    assert result.exit_code == 1, result.output
    assert "0 stored, 0 already stored, 2 failed (of 2)" in result.output
    for name in ("pipe.dcm", "/dev/zero"):
        assert f"{name}: not a regular file or folder (a device, pipe or socket)" in result.output
    assert list(runtime.archive.incoming.iterdir()) == []


def test_links_pipes_and_empty_folders_in_a_folder_are_skipped_and_named(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    [image] = write_instances(folder, 1)
    (folder / "link.dcm").symlink_to(image)
    (folder / "loop").symlink_to(folder)
    os.mkfifo(folder / "pipe")
    (tmp_path / "empty").mkdir()
    result = ingest(settings, folder, tmp_path / "empty")
    assert result.exit_code == 0, result.output
    assert "1 stored, 0 already stored, 0 failed, 4 skipped (of 5)" in result.output
    assert "skipped: " + str(folder / "link.dcm") + ": a symbolic link; not followed" in (
        result.output
    )
    assert str(folder / "loop") + ": a symbolic link; not followed" in result.output
    assert str(folder / "pipe") + ": not a regular file or folder" in result.output
    assert str(tmp_path / "empty") + ": no files in this folder" in result.output
    assert instance_count(runtime) == 1


def test_a_media_dicomdir_is_skipped_not_failed(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    # A CD's folder: its DICOMDIR (the index of its files) beside the instances it lists.
    medium = tmp_path / "cd"
    write_instances(medium / "IMAGES", 2)
    shutil.copy(pydicom_test_file("dicomdirtests/DICOMDIR"), medium / "DICOMDIR")
    result = ingest(settings, medium)
    assert result.exit_code == 0, result.output
    assert "2 stored, 0 already stored, 0 failed, 1 skipped (of 3)" in result.output
    assert "DICOMDIR: a DICOMDIR: the index of a medium's files" in result.output
    assert instance_count(runtime) == 2


def test_a_zip_cut_short_is_named_damaged(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as zf:
        zf.writestr("a.dcm", to_bytes(make_cr(seed=1, rows=32, columns=32)))
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[:200])  # no central directory: not a zip to zipfile
    result = ingest(settings, cut)
    assert result.exit_code == 1, result.output
    assert "cut.zip: a damaged zip file: its central directory is missing" in result.output
    assert instance_count(runtime) == 0


def test_an_interrupted_ingest_says_what_it_stored_and_goes_on_when_run_again(
    settings: Settings, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_instances(tmp_path / "in", 4)
    real = store_received
    calls = [0]

    def interrupted_on_the_third(**kwargs: Any) -> StoreOutcome:
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third is being stored
        return real(**kwargs)

    monkeypatch.setattr("service.dicom.ingest_files.store_received", interrupted_on_the_third)
    stopped = ingest(settings, tmp_path / "in")
    assert stopped.exit_code == 130, stopped.output
    assert "interrupted: 2 stored, 0 already stored, 0 failed so far" in stopped.output
    assert instance_count(runtime) == 2
    assert list(runtime.archive.incoming.iterdir()) == []
    monkeypatch.setattr("service.dicom.ingest_files.store_received", real)
    again = ingest(settings, tmp_path / "in")
    assert "2 stored, 2 already stored, 0 failed (of 4)" in again.output
    assert instance_count(runtime) == 4
