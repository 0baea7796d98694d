"""The analysis's DICOM objects, filed in the source study as new series.

Their UIDs and bytes depend only on the analysis (id, model, creation time), so a job that
runs twice files the same objects twice: the archive answers "already stored". The pictures
(Secondary Capture, Parametric Maps) are built beside the pipeline (``output_pictures``);
the measurement report here, once the regions are known; all four are filed together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from service.analysis.output_pictures import Pictures
from service.analysis.runtime import AnalysisServices
from service.analysis.tasks import AnalysisFailed, Job
from service.auth.access_log import record_access
from service.auth.roles import Role
from service.auth.service import Principal
from service.dicom import repository as archive_repository
from service.dicom.archive import ReceivedFile
from service.dicom.store import StoreOutcome, store_received_together
from service.inference.registry import LoadedModel
from service.results.output_dataset import to_part10_bytes
from service.results.output_identity import OutputIdentity
from service.results.structured_report import structured_report

if TYPE_CHECKING:
    from service.analysis.pipeline import Decoded

SYSTEM = Principal(user_pk=None, username="system:analysis", role=Role.ADMIN)


def output_identity(job: Job, model: LoadedModel) -> OutputIdentity:
    """Return what names the analysis's outputs: analysis, model, weights, creation time."""
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    return OutputIdentity(
        analysis_id=str(job.analysis_id),
        model_name=model.name,
        model_version=model.version,
        weights_sha256=model.sha256,
        created=created,
    )


@dataclass(frozen=True)
class Report:
    dataset: Dataset
    data: bytes  # Part 10


def measurement_report(
    decoded: Decoded,
    *,
    identity: OutputIdentity,
    findings: list[tuple[str, float]],
    regions: list[tuple[str, float]],
) -> Report:
    """Return the measurement report (Comprehensive SR) and its Part 10 bytes."""
    report = structured_report(
        decoded.source, findings=findings, regions=regions, identity=identity
    )
    return Report(report, to_part10_bytes(report))


def store_outputs(
    services: AnalysisServices, job: Job, *, pictures: Pictures, report: Report
) -> dict[str, str]:
    """File the pictures and the measurement report together; return output name → SOP
    Instance UID."""
    # The report's metadata is taken from it as it is in memory; the pictures' (small
    # headers, pixels left on disk) are read back from their files.
    objects: dict[str, tuple[bytes, Dataset | None]] = {
        name: (data, None) for name, data in pictures.objects.items()
    }
    objects["measurement_report"] = (report.data, report.dataset)
    uids = _file_together(services, job, list(objects.values()))
    return dict(zip(objects, uids, strict=True))


def _file_together(
    services: AnalysisServices, job: Job, objects: list[tuple[bytes, Dataset | None]]
) -> list[str]:
    """File Part 10 objects (with their data sets where in memory) in the archive in one
    transaction; return their SOP Instance UIDs."""
    runtime = services.runtime
    received: list[ReceivedFile] = []
    try:
        for data, _dataset in objects:
            writer = runtime.archive.writer(runtime.settings.max_instance_bytes)
            try:
                writer.write(data)
                received.append(writer.finish())
            except BaseException:
                writer.abort()
                raise
    except BaseException:
        for r in received:
            r.path.unlink(missing_ok=True)
        raise

    def record(session: Session, outcome: StoreOutcome) -> None:
        record_access(
            session=session,
            principal=SYSTEM,
            action="analysis.output",
            status_code=200,
            client_addr="",
            request_id=str(job.analysis_id),
            study_instance_uid=outcome.study_instance_uid,
            series_instance_uid=outcome.series_instance_uid,
            sop_instance_uid=outcome.sop_instance_uid,
        )

    outcomes = store_received_together(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        received=received,
        require_image=False,
        audit=record,
        datasets=[dataset for _data, dataset in objects],
    )
    for outcome in outcomes:
        if not outcome.ok:
            raise AnalysisFailed(f"a result object could not be filed: {outcome.reason}")
    return [outcome.sop_instance_uid for outcome in outcomes]


def output_files(services: AnalysisServices, sop_instance_uids: Iterable[str]) -> list[Path]:
    """Return the archive files of stored output instances."""
    files: list[Path] = []
    with services.runtime.session_factory() as session:
        for uid in sop_instance_uids:
            instance = archive_repository.get_instance(session, uid)
            if instance is not None:
                files.append(services.runtime.archive.path(instance.file_path))
    return files
