"""The STOW-RS answer (PS3.18 10.5.3): which instances were stored, which failed and why."""

from __future__ import annotations

from collections.abc import Sequence

from service.dicom.dicom_json import DicomJson, attribute
from service.dicom.store import StoreOutcome

RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
# The standard has no element for a failure's words; Vigil puts them in a private element.
PRIVATE_CREATOR = "00090010"
PRIVATE_CREATOR_NAME = "VIGIL 1.0"
FAILURE_DETAIL = "00091001"


def instance_url(base_url: str, outcome: StoreOutcome) -> str:
    return (
        f"{base_url}/dicomweb/studies/{outcome.study_instance_uid}"
        f"/series/{outcome.series_instance_uid}/instances/{outcome.sop_instance_uid}"
    )


def stow_response(outcomes: Sequence[StoreOutcome], base_url: str) -> tuple[int, DicomJson]:
    """Return the HTTP status and the DICOM JSON body for a STOW-RS request's outcomes.

    200: every instance stored; 202: some stored, some failed; 409: none could be stored.
    """
    stored = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    body: DicomJson = {}
    studies = {o.study_instance_uid for o in stored}
    if len(studies) == 1:
        body[RETRIEVE_URL] = attribute("UR", f"{base_url}/dicomweb/studies/{studies.pop()}")
    if failed:
        body[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": [_failed_item(o) for o in failed]}
    if stored:
        body[REFERENCED_SOP_SEQUENCE] = {
            "vr": "SQ",
            "Value": [
                {
                    REFERENCED_SOP_CLASS_UID: attribute("UI", o.sop_class_uid),
                    REFERENCED_SOP_INSTANCE_UID: attribute("UI", o.sop_instance_uid),
                    RETRIEVE_URL: attribute("UR", instance_url(base_url, o)),
                }
                for o in stored
            ],
        }
    if not failed:
        return 200, body
    return (202 if stored else 409), body


def _failed_item(outcome: StoreOutcome) -> DicomJson:
    assert outcome.failure is not None
    return {
        REFERENCED_SOP_CLASS_UID: attribute("UI", outcome.sop_class_uid),
        REFERENCED_SOP_INSTANCE_UID: attribute("UI", outcome.sop_instance_uid),
        FAILURE_REASON: attribute("US", int(outcome.failure)),
        PRIVATE_CREATOR: attribute("LO", PRIVATE_CREATOR_NAME),
        FAILURE_DETAIL: attribute("LT", outcome.reason),
    }
