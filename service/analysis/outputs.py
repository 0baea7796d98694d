"""The analysis's DICOM objects, filed in the source study as new series.

Their UIDs and bytes depend only on the analysis (id, model, creation time), so a job that
runs twice files the same objects twice: the archive answers "already stored".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from service.analysis.overlay_images import composite_image
from service.analysis.results_files import OverlayKind
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
from service.results.parametric_map import parametric_map
from service.results.resize import fit_within
from service.results.secondary_capture import secondary_capture
from service.results.structured_report import structured_report

if TYPE_CHECKING:
    from service.analysis.pipeline import Decoded

SC_MAX_SIDE = 1024
SYSTEM = Principal(user_pk=None, username="system:analysis", role=Role.ADMIN)


def store_outputs(
    services: AnalysisServices,
    job: Job,
    decoded: Decoded,
    *,
    model: LoadedModel,
    findings: list[tuple[str, float]],
    regions: list[tuple[str, float]],
    probability_map: np.ndarray,
    gradcam: np.ndarray | None,
) -> dict[str, str]:
    """File the Secondary Capture, Parametric Maps and SR; return kind → SOP Instance UID."""
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    identity = OutputIdentity(
        analysis_id=str(job.analysis_id),
        model_name=model.name,
        model_version=model.version,
        weights_sha256=model.sha256,
        created=created,
    )
    source = decoded.source
    shown, kind, title = (
        (gradcam, OverlayKind.GRADCAM, "Grad-CAM")
        if gradcam is not None
        else (probability_map, OverlayKind.PROBABILITY, "Probability")
    )
    # The Secondary Capture adds its own caption (disclaimer, model) below the image. It is a
    # picture for any PACS viewer: at most 1024 pixels a side is plenty, and 4× lighter.
    rgb = composite_image(fit_within(decoded.display, SC_MAX_SIDE), shown, kind, caption="")
    objects: dict[str, Dataset] = {
        "secondary_capture": secondary_capture(source, rgb, identity=identity, overlay=title),
        "probability_map": parametric_map(
            source,
            np.clip(probability_map, 0.0, 1.0),
            quantity="probability",
            identity=identity,
        ),
        "measurement_report": structured_report(
            source, findings=findings, regions=regions, identity=identity
        ),
    }
    if gradcam is not None:
        objects["gradcam_map"] = parametric_map(
            source, gradcam, quantity="gradcam", identity=identity
        )
    uids = _file_together(services, job, list(objects.values()))
    return dict(zip(objects, uids, strict=True))


def _file_together(services: AnalysisServices, job: Job, objects: list[Dataset]) -> list[str]:
    """File data sets in the archive in one transaction; return their SOP Instance UIDs."""
    runtime = services.runtime
    received: list[ReceivedFile] = []
    try:
        for ds in objects:
            writer = runtime.archive.writer(runtime.settings.max_instance_bytes)
            try:
                writer.write(to_part10_bytes(ds))
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
        datasets=objects,
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
