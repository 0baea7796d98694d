"""Analyses over HTTP: request them for a study, read their results and overlay images."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session, sessionmaker

from service.analysis import repository
from service.analysis import service as analysis_service
from service.analysis.methods import parse_methods
from service.analysis.overlay_images import overlay_caption, overlay_png
from service.analysis.results_files import OverlayKind
from service.analysis.runtime import AnalysisServices
from service.analysis.schemas import (
    AnalysisOut,
    AnalysisRequest,
    ModelIdentity,
    RequestAnswer,
    RequestedOut,
)
from service.analysis.views import analysis_out, no_overlay, not_done_reason
from service.auth.access_log import record_request_access
from service.auth.dependencies import AnalysisReader, AnalysisRequester
from service.auth.service import Principal
from service.db import session_scope
from service.deps import SessionDep, SessionFactoryDep
from service.dicom import repository as archive
from service.dicom.uids import is_valid_uid
from service.errors import BadRequest, NotFound, ServiceUnavailable
from service.orm import Analysis, AnalysisStatus, Instance, Series, Study

router = APIRouter(tags=["analyses"])


async def get_analysis_services(request: Request) -> AnalysisServices:
    return request.app.state.analysis  # type: ignore[no-any-return]


AnalysisServicesDep = Annotated[AnalysisServices, Depends(get_analysis_services)]
StudyUID = Annotated[str, Path(max_length=64)]


@router.post("/studies/{study_instance_uid}/analyses", status_code=202)
def request_analyses(
    study_instance_uid: StudyUID,
    request: Request,
    principal: AnalysisRequester,
    services: AnalysisServicesDep,
    session_factory: SessionFactoryDep,
    body: Annotated[AnalysisRequest | None, Body()] = None,
) -> RequestAnswer:
    """Analyse every analysable image of a study (idempotent: asking again answers the same)."""
    _check_uid(study_instance_uid)
    body = body or AnalysisRequest()
    settings = services.runtime.settings
    model = services.models.get(body.model or settings.default_model)
    methods = parse_methods(body.methods) if body.methods is not None else services.default_methods
    with session_scope(session_factory) as session:
        answers = analysis_service.request_for_study(
            session=session,
            study_instance_uid=study_instance_uid,
            model=model,
            methods=methods,
            requested_by=principal.username,
        )
        session.flush()
        record_request_access(
            request,
            principal,
            "analysis.request",
            session=session,
            status_code=202,
            study_instance_uid=study_instance_uid,
            result_count=sum(1 for a in answers if a.analysis is not None),
        )
        out = [
            RequestedOut(
                sop_instance_uid=a.sop_instance_uid,
                analysis_id=a.analysis.id if a.analysis else None,
                status=a.analysis.status if a.analysis else None,
                created=a.created,
                skipped=a.skipped or None,
            )
            for a in answers
        ]
        to_run = [a.analysis.id for a in answers if a.analysis and a.needs_enqueue]
    if not services.enqueue(to_run):  # after the commit: a job never sees an uncommitted row
        raise ServiceUnavailable(
            "the job broker cannot be reached: the analyses could not be queued (each is "
            "recorded as failed with that reason); request them again"
        )
    return RequestAnswer(
        study_instance_uid=study_instance_uid,
        model=ModelIdentity(
            name=model.name, version=model.version, sha256=model.sha256, disclaimer=model.disclaimer
        ),
        methods=[m.value for m in methods],
        analyses=out,
    )


@router.get("/studies/{study_instance_uid}/analyses")
def list_study_analyses(
    study_instance_uid: StudyUID,
    request: Request,
    principal: AnalysisReader,
    session: SessionDep,
    services: AnalysisServicesDep,
) -> list[AnalysisOut]:
    """Every analysis of a study's images, oldest first."""
    _check_uid(study_instance_uid)
    study = archive.get_study(session, study_instance_uid)
    if study is None:
        raise NotFound(f"no study {study_instance_uid} in the archive")
    rows = repository.list_for_study(session, study)
    _log_read(session, principal, request, "analysis.list", study_instance_uid, len(rows))
    return [analysis_out(a, i, s, study, services.models) for a, i, s in rows]


@router.get("/analyses/{analysis_id}")
def get_analysis(
    analysis_id: uuid.UUID,
    request: Request,
    principal: AnalysisReader,
    session: SessionDep,
    services: AnalysisServicesDep,
) -> AnalysisOut:
    """One analysis: status, model, findings, regions, outputs and per-stage timings."""
    analysis, instance, series, study = _found(session, analysis_id)
    _log_read(session, principal, request, "analysis.read", study.study_instance_uid, 1)
    return analysis_out(analysis, instance, series, study, services.models)


@router.get("/analyses/{analysis_id}/overlays/{kind}.png", response_class=FileResponse)
def get_overlay(
    analysis_id: uuid.UUID,
    kind: OverlayKind,
    request: Request,
    principal: AnalysisReader,
    factory: SessionFactoryDep,
    services: AnalysisServicesDep,
) -> FileResponse:
    """An RGBA overlay at the image's size (transparent where there is nothing to show)."""
    return _image(factory, services, principal, request, analysis_id, kind, composite=False)


@router.get("/analyses/{analysis_id}/composite/{kind}.png", response_class=FileResponse)
def get_composite(
    analysis_id: uuid.UUID,
    kind: OverlayKind,
    request: Request,
    principal: AnalysisReader,
    factory: SessionFactoryDep,
    services: AnalysisServicesDep,
) -> FileResponse:
    """The image with an overlay and its colour-scale legend."""
    return _image(factory, services, principal, request, analysis_id, kind, composite=True)


def _image(
    factory: sessionmaker[Session],
    services: AnalysisServices,
    principal: Principal,
    request: Request,
    analysis_id: uuid.UUID,
    kind: OverlayKind,
    *,
    composite: bool,
) -> FileResponse:
    # Looked up read-only, drawn (about a second, the first time) outside any transaction,
    # logged in a short one: on SQLite a writing transaction holds the one write lock.
    with factory() as session:
        analysis, _instance, _series, study = _found(session, analysis_id)
    if analysis.status is not AnalysisStatus.DONE:
        raise NotFound(not_done_reason(analysis, "no images"))
    disclaimer = (analysis.results or {}).get("disclaimer", "")
    path = overlay_png(
        services.runtime.settings.results_path,
        analysis_id,
        kind,
        composite_image=composite,
        caption=overlay_caption(analysis.model_name, analysis.model_version, disclaimer),
    )
    if path is None:
        raise no_overlay(analysis_id, (analysis.results or {}).get("overlays", []), kind.value)
    action = "analysis.composite" if composite else "analysis.overlay"
    _log_read(None, principal, request, action, study.study_instance_uid, 1)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private"})


def _found(session: Session, analysis_id: uuid.UUID) -> tuple[Analysis, Instance, Series, Study]:
    found = repository.get_with_context(session, analysis_id)
    if found is None:
        raise NotFound(f"no analysis {analysis_id}")
    return found


def _check_uid(uid: str) -> None:
    if not is_valid_uid(uid):
        raise BadRequest("the study in the URL is not a valid UID")


def _log_read(
    session: Session | None,
    principal: Principal,
    request: Request,
    action: str,
    study_instance_uid: str,
    count: int,
) -> None:
    record_request_access(
        request,
        principal,
        action,
        session=session,
        study_instance_uid=study_instance_uid,
        result_count=count,
    )
