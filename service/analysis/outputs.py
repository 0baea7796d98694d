"""The analysis's DICOM objects, filed in the source study as new series.

Their UIDs and bytes depend only on the analysis (id, model, creation time), so a job that
runs twice files the same objects twice: the archive answers "already stored". The pictures
are built and prepared for filing in ``output_pictures`` (in the helper process), the
measurement report here once the regions are known; all four are filed together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from service.analysis.prepared_files import IncomingPlace, PreparedObject, prepare
from service.analysis.runtime import AnalysisServices
from service.analysis.tasks import AnalysisFailed, Job
from service.auth.access_log import record_access
from service.auth.roles import Role
from service.auth.service import Principal
from service.db import Executes
from service.dicom import repository as archive_repository
from service.dicom.failure import InstanceRejected
from service.dicom.store import StoreOutcome, store_parsed_together
from service.errors import PayloadTooLarge
from service.inference.registry import LoadedModel
from service.results.output_identity import OutputIdentity
from service.results.structured_report import structured_report

if TYPE_CHECKING:
    from service.analysis.pipeline import Decoded

SYSTEM = Principal(user_pk=None, username="system:analysis", role=Role.ADMIN)


def output_identity(job: Job, model: LoadedModel) -> OutputIdentity:
    """Return what names the analysis's outputs: analysis, model, weights, creation time."""
    created = job.created_at  # timezone-aware, as every time read from the database
    return OutputIdentity(
        analysis_id=str(job.analysis_id),
        model_name=model.name,
        model_version=model.version,
        weights_sha256=model.sha256,
        created=created,
    )


def incoming_place(services: AnalysisServices) -> IncomingPlace:
    """Return where the helper process prepares result files (this archive's incoming)."""
    archive, settings = services.runtime.archive, services.runtime.settings
    return IncomingPlace(archive.root, archive.fsync, settings.max_instance_bytes)


def measurement_report(
    services: AnalysisServices,
    decoded: Decoded,
    *,
    identity: OutputIdentity,
    findings: list[tuple[str, float]],
    regions: list[tuple[str, float]],
) -> PreparedObject:
    """Return the measurement report (Comprehensive SR), prepared for filing."""
    report = structured_report(
        decoded.source, findings=findings, regions=regions, identity=identity
    )
    runtime = services.runtime
    try:
        return prepare(runtime.archive, runtime.settings.max_instance_bytes, report)
    except InstanceRejected as exc:
        raise AnalysisFailed(f"a result object could not be filed: {exc.reason}") from exc
    except PayloadTooLarge as exc:
        raise AnalysisFailed(f"a result object could not be filed: {exc.message}") from exc


def store_outputs(
    services: AnalysisServices, job: Job, objects: Mapping[str, PreparedObject]
) -> dict[str, str]:
    """File prepared result objects in the archive in one transaction (all or none, with
    their access-log rows); return output name → SOP Instance UID. The files are consumed."""
    runtime = services.runtime

    def record(session: Executes, outcome: StoreOutcome) -> None:
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

    outcomes = store_parsed_together(
        session_factory=runtime.session_factory,
        archive=runtime.archive,
        items=[(o.received, o.parsed) for o in objects.values()],
        audit=record,
    )
    for outcome in outcomes:
        if not outcome.ok:
            raise AnalysisFailed(f"a result object could not be filed: {outcome.reason}")
    return {name: outcome.sop_instance_uid for name, outcome in zip(objects, outcomes, strict=True)}


def output_files(services: AnalysisServices, sop_instance_uids: Iterable[str]) -> list[Path]:
    """Return the archive files of stored output instances."""
    files: list[Path] = []
    with services.runtime.session_factory() as session:
        for uid in sop_instance_uids:
            instance = archive_repository.get_instance(session, uid)
            if instance is not None:
                files.append(services.runtime.archive.path(instance.file_path))
    return files
