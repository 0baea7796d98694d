"""The dicomweb-client package (a real, widely used DICOMweb client) against `vigil serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from service.auth.roles import Role
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import make_cr, rg1_files
from tests.live_server import live_server

UID = "0020000D"


@pytest.fixture
def dicomweb(
    settings: Settings, runtime: Runtime, tokens: dict[Role, str], tmp_path: Path
) -> Iterator[DICOMwebClient]:
    with live_server(settings, tmp_path / "server.log") as server:
        yield DICOMwebClient(
            url=f"{server.base_url}/dicomweb",
            headers={"Authorization": f"Bearer {tokens[Role.INTEGRATION]}"},
        )


def test_store_search_and_retrieve_the_rg1_files(dicomweb: DICOMwebClient) -> None:
    files = rg1_files()
    datasets = [pydicom.dcmread(files[name]) for name in ("RG1_UNCR", "RG1_J2KR", "RG1_J2KI")]
    response = dicomweb.store_instances(datasets)
    assert len(response.ReferencedSOPSequence) == 3
    assert "FailedSOPSequence" not in response

    studies = dicomweb.search_for_studies(search_filters={"PatientID": "9RG1"})
    assert [s[UID]["Value"][0] for s in studies] == [datasets[0].StudyInstanceUID]
    instances = dicomweb.search_for_instances(study_instance_uid=datasets[0].StudyInstanceUID)
    assert len(instances) == 3

    for original_path, original in zip(
        (files["RG1_UNCR"], files["RG1_J2KR"]), datasets[:2], strict=True
    ):
        retrieved = dicomweb.retrieve_instance(
            original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID
        )
        assert retrieved.SOPInstanceUID == original.SOPInstanceUID
        assert np.array_equal(retrieved.pixel_array, pydicom.dcmread(original_path).pixel_array)


def test_metadata_and_rendered_through_the_client(dicomweb: DICOMwebClient) -> None:
    ds = make_cr(rows=64, columns=48)
    dicomweb.store_instances([ds])
    metadata = dicomweb.retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert metadata["00100020"]["Value"] == ["PID-1"]
    png = dicomweb.retrieve_instance_rendered(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, media_types=("image/png",)
    )
    assert png.startswith(b"\x89PNG")
