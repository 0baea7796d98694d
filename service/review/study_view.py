"""Everything the study view shows about one analysis, gathered for the template and its
script: the image's study, the model and its results, the bias flag, earlier decisions."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from service.analysis.results_files import OverlayKind
from service.auth.service import Principal
from service.auth.signing import sign, unsign
from service.orm import Decision, Patient
from service.review import repository, service
from service.review.access import Context
from service.review.rendering import BASE
from service.review.schemas import MAX_COMMENT_CHARS, MAX_MARKS, NO_FINDING
from service.review.worklist import WorklistQuery

OVERLAY_NAMES = {
    OverlayKind.GRADCAM: "Grad-CAM",
    OverlayKind.GRADCAMPP: "Grad-CAM++",
    OverlayKind.OCCLUSION: "Occlusion",
    OverlayKind.PROBABILITY: "Probability map",
    OverlayKind.LUNGS: "Lung fields",
}
# The first overlay shown: what the model looked at, else where it sees the finding.
DEFAULT_OVERLAYS = (OverlayKind.GRADCAM, OverlayKind.PROBABILITY, OverlayKind.LUNGS)
_OPENED = "review-opened"


def opened_token(secret_key: str, analysis_id: uuid.UUID, now: float | None = None) -> str:
    """Return a signed note of when this analysis's study view was served (milliseconds)."""
    millis = round((time.time() if now is None else now) * 1000)
    return sign(secret_key, _OPENED, f"{millis}-{analysis_id.hex}")


def opened_at(secret_key: str, analysis_id: uuid.UUID, token: str) -> datetime | None:
    """Return when the study view carrying this token was served, if the token is genuine."""
    value = unsign(secret_key, _OPENED, token) if token else None
    millis, _, analysis = (value or "").partition("-")
    if not millis.isdigit() or analysis != analysis_id.hex:
        return None
    return datetime.fromtimestamp(int(millis) / 1000, tz=UTC)


def suggested_label(results: dict[str, Any]) -> str:
    """Return the finding an "agree" means: the model's top finding at 50 % or more, else none."""
    top = max(results.get("findings", []), key=lambda f: f["probability"], default=None)
    return top["label"] if top is not None and top["probability"] >= 0.5 else NO_FINDING


def study_context(
    *,
    session: Session,
    context: Context,
    login: Principal,
    query: WorklistQuery,
    secret_key: str,
) -> dict[str, Any]:
    """Return the template context of a study view (without the form's submitted values)."""
    analysis, instance, series, study = context
    results: dict[str, Any] = analysis.results or {}
    patient = session.get(Patient, study.patient_pk)
    present = set(results.get("overlays", []))
    overlays = [
        {"kind": k.value, "name": name} for k, name in OVERLAY_NAMES.items() if k.value in present
    ]
    default = next((k.value for k in DEFAULT_OVERLAYS if k.value in present), None)
    history = service.outs(analysis, repository.list_reviews(session, analysis.id))
    others = [
        (a, i) for a, i in repository.study_analyses(session, study.id) if a.id != analysis.id
    ]
    params = query.as_params(page=1)
    here = f"{BASE}/analyses/{analysis.id}"
    bias = results.get("bias") or {}
    return {
        "analysis": analysis,
        "instance": instance,
        "series": series,
        "study": study,
        "patient": patient,
        "results": results,
        "findings": results.get("findings", []),
        "regions": results.get("regions", []),
        "region_source": results.get("region_source", ""),
        "bias": bias,
        "overlays": overlays,
        "labels": service.allowed_labels(analysis),
        "suggested_label": suggested_label(results),
        "decisions": [d.value for d in Decision],
        "history": list(reversed(history)),
        "my_current": [r for r in history if r.current and r.username == login.username],
        "others": others,
        "query_params": params,
        "here": here,
        "max_comment": MAX_COMMENT_CHARS,
        "opened_token": opened_token(secret_key, analysis.id),
        "script_data": {
            "analysisId": str(analysis.id),
            "columns": instance.columns,
            "rows": instance.rows,
            "urls": {
                "image": f"{here}/image.bin",
                "overlay": f"{here}/overlays/{{kind}}.png",
                "regions": f"{here}/regions.json",
                "next": f"{here}/next?{params}",
                "previous": f"{here}/previous?{params}",
            },
            "overlays": [o["kind"] for o in overlays],
            "defaultOverlay": default,
            "maxMarks": MAX_MARKS,
        },
    }
