"""Stored paths resolve inside the archive and nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.dicom.archive import Archive


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return Archive(tmp_path / "archive", fsync=False)


def test_a_stored_path_lies_under_the_root(archive: Archive) -> None:
    relative = Archive.relative_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert archive.path(relative) == archive.root / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"


@pytest.mark.parametrize(
    "relative",
    ["../outside.dcm", "1.2/../../outside.dcm", "/etc/passwd", "", ".", "1.2/../.."],
)
def test_paths_that_leave_the_archive_are_refused(archive: Archive, relative: str) -> None:
    with pytest.raises(ValueError, match="escapes the archive"):
        archive.path(relative)


def test_a_sibling_folder_sharing_the_root_name_is_outside(archive: Archive) -> None:
    # <root>-old/x shares <root> as a text prefix but is not inside it.
    with pytest.raises(ValueError, match="escapes the archive"):
        archive.path(f"../{archive.root.name}-old/x.dcm")
