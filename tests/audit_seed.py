"""Seed done analyses with bias audits straight into the database (fast: no images, no
network), for cohort report tests and the report's benchmark."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from service.orm import Analysis, AnalysisStatus, Instance, Patient, Series, Study

CR = "1.2.840.10008.5.1.4.1.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
TEST_SHA = "ab" * 32


@dataclass
class SeedCase:
    """One analysed image: its equipment and patient, the model's output and the audit."""

    institution: str = "Site A"
    station: str = "ST-A"
    manufacturer: str = "Acme"
    equipment_model: str = "DR-1"
    view: str = "PA"
    sex: str = "F"
    age: str = "055Y"
    burned_in: str = "NO"
    probability: float = 0.3
    flags: tuple[str, ...] = ()
    relevant_share: float = 0.8
    border_share: float = 0.05
    burned_in_share: float = 0.0
    outside_body_share: float = 0.02
    counterfactual_change: float | None = 0.0
    boxes: tuple[str, ...] = ()
    patient_id: str = ""
    patient_name: str = "Doe^Jane"
    analysed_at: datetime = field(default_factory=lambda: datetime(2026, 3, 10, 12, tzinfo=UTC))
    model: str = "vigil-test-classifier"
    model_version: str = "0.0.1"
    model_sha256: str = TEST_SHA
    label: str = "lesion"
    bias: dict[str, Any] | None = None  # a whole stored audit (copied from a real analysis)


def bias_results(case: SeedCase) -> dict[str, Any]:
    """Return ``results["bias"]`` in the pipeline's shape for a seeded case."""
    if case.bias is not None:
        return case.bias
    counterfactual = (
        None
        if case.counterfactual_change is None
        else {
            "probability_before": case.probability,
            "probability_after": round(case.probability - case.counterfactual_change, 4),
            "change": case.counterfactual_change,
            "hotspot_pixels": 120,
        }
    )
    return {
        "method": "gradcam",
        "relevant_region": "lungs",
        "metrics": {
            "relevant_share": case.relevant_share,
            "border_share": case.border_share,
            "burned_in_share": case.burned_in_share,
            "outside_body_share": case.outside_body_share,
            "top_outside_relevant_share": round(1 - case.relevant_share, 4),
            "peak": "relevant-region",
            "peak_row": 200,
            "peak_col": 180,
        },
        "burned_in": {"attribute": case.burned_in, "boxes": list(case.boxes)},
        "counterfactual": counterfactual,
        "flags": [{"code": code, "reason": f"seeded {code}"} for code in case.flags],
        "flagged": bool(case.flags),
    }


def seed(session: Session, cases: list[SeedCase]) -> list[uuid.UUID]:
    """Add one patient, study, series, instance and done analysis per case; return the
    analyses' ids (in the order given)."""
    ids: list[uuid.UUID] = []
    rows: list[Any] = []
    for case in cases:
        key = uuid.uuid4()
        patient = Patient(
            id=uuid.uuid4(),
            patient_id=case.patient_id or f"PID-{key.hex[:8]}",
            patient_name=case.patient_name,
            patient_sex=case.sex,
        )
        study = Study(
            id=uuid.uuid4(),
            study_instance_uid=f"2.25.{key.int}",
            patient_pk=patient.id,
            patient_age=case.age,
        )
        series = Series(
            id=uuid.uuid4(),
            series_instance_uid=f"2.25.{key.int + 1}",
            study_pk=study.id,
            modality="CR",
            manufacturer=case.manufacturer,
            manufacturer_model_name=case.equipment_model,
            institution_name=case.institution,
            station_name=case.station,
        )
        instance = Instance(
            id=uuid.uuid4(),
            sop_instance_uid=f"2.25.{key.int + 2}",
            series_pk=series.id,
            sop_class_uid=CR,
            view_position=case.view,
            transfer_syntax_uid=EXPLICIT_LE,
            file_path=f"seed/{key.hex}.dcm",
            file_size=1,
            sha256=hashlib.sha256(key.bytes).hexdigest(),
            dicom_json={},
        )
        analysis = Analysis(
            id=key,
            instance_pk=instance.id,
            study_pk=study.id,
            model_name=case.model,
            model_version=case.model_version,
            model_sha256=case.model_sha256,
            methods="gradcam",
            status=AnalysisStatus.DONE,
            created_at=case.analysed_at,
            finished_at=case.analysed_at,
            results={
                "disclaimer": "Test model, not for clinical use.",
                "findings": [{"label": case.label, "probability": case.probability}],
                "bias": bias_results(case),
            },
        )
        rows.append((patient, study, series, instance, analysis))
        ids.append(key)
    # Parents first, table by table: one INSERT batch per table.
    for level in range(5):
        session.add_all([r[level] for r in rows])
        session.flush()
    return ids
