"""Who made a DICOM output and when: model identity, deterministic UIDs, a fixed creation time.

Re-running one analysis must give the same SOP Instance UIDs and the same bytes: the archive is
idempotent on SOP Instance UID and refuses different bytes under one UID. So every UID is derived
from the analysis id (never random) and every date comes from the caller (never the clock).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydicom.uid import UID

AI_RESULT_DISCLAIMER = "AI RESULT – NOT FOR PRIMARY DIAGNOSIS"
MANUFACTURER = "Vigil"

# Name-based UUIDs (RFC 4122 version 5) under this namespace give Vigil's 2.25 UIDs.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:vigil:dicom-outputs")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LONG_STRING_MAX = 64  # DICOM LO


def derived_uid(*parts: str) -> UID:
    """Return the 2.25 UID (PS3.5 B.2) of the name-based UUID of ``parts``: same parts, same UID.

    pydicom's ``generate_uid(prefix=None, entropy_srcs=...)`` would ignore the sources and
    return a random UUID, so the UUID is made here.
    """
    name = json.dumps(list(parts))  # unambiguous: ("a.b", "c") and ("a", "b.c") differ
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}")


class OutputKind(StrEnum):
    """The DICOM objects written for one analysis; each goes into its own new series."""

    SECONDARY_CAPTURE = "secondary-capture"
    PROBABILITY_MAP = "probability-map"
    GRADCAM_MAP = "gradcam-map"
    MEASUREMENT_REPORT = "measurement-report"
    PROBABILITY_SEGMENTATION = "probability-segmentation"


# High numbers so that the AI series sort after the modality's own series in a viewer.
_SERIES_NUMBERS = {
    OutputKind.SECONDARY_CAPTURE: 9001,
    OutputKind.PROBABILITY_MAP: 9002,
    OutputKind.GRADCAM_MAP: 9003,
    OutputKind.MEASUREMENT_REPORT: 9004,
    OutputKind.PROBABILITY_SEGMENTATION: 9005,
}
_SERIES_LABELS = {
    OutputKind.SECONDARY_CAPTURE: "AI overlay",
    OutputKind.PROBABILITY_MAP: "AI probability map",
    OutputKind.GRADCAM_MAP: "AI Grad-CAM map",
    OutputKind.MEASUREMENT_REPORT: "AI measurements",
    OutputKind.PROBABILITY_SEGMENTATION: "AI probability segmentation",
}


@dataclass(frozen=True)
class OutputIdentity:
    """The model and analysis behind a set of outputs, and the moment they are stamped with.

    ``created`` must be timezone-aware and stable for an analysis (for example the time the
    analysis completed, read back from the database), so that a re-run writes the same bytes.
    """

    analysis_id: str
    model_name: str
    model_version: str
    weights_sha256: str
    created: datetime
    disclaimer: str = AI_RESULT_DISCLAIMER

    def __post_init__(self) -> None:
        if not self.analysis_id.strip():
            raise ValueError("analysis_id is empty")
        for field, value in (
            ("model_name", self.model_name),
            ("model_version", self.model_version),
            ("disclaimer", self.disclaimer),
        ):
            if not value.strip() or len(value) > _LONG_STRING_MAX or "\\" in value:
                raise ValueError(
                    f"{field} must be 1 to {_LONG_STRING_MAX} characters without a backslash "
                    f"(DICOM LO): {value!r}"
                )
        if not _SHA256.fullmatch(self.weights_sha256):
            raise ValueError("weights_sha256 is not a lowercase hex sha256")
        if self.created.tzinfo is None or self.created.utcoffset() is None:
            raise ValueError("created must be timezone-aware")

    @property
    def model_label(self) -> str:
        """Return "<model name> <version>", the way every output names its model."""
        return f"{self.model_name} {self.model_version}"

    def uid(self, *parts: str) -> UID:
        """Return a UID under the 2.25 root derived from the analysis id and ``parts``."""
        return derived_uid("analysis", self.analysis_id, *parts)

    def series_uid(self, kind: OutputKind) -> UID:
        """Return the Series Instance UID of one kind of output of this analysis."""
        return self.uid(kind.value, "series")

    def instance_uid(self, kind: OutputKind) -> UID:
        """Return the SOP Instance UID of one kind of output of this analysis."""
        return self.uid(kind.value, "instance")

    def series_number(self, kind: OutputKind) -> int:
        """Return the fixed Series Number of one kind of output."""
        return _SERIES_NUMBERS[kind]

    def series_description(self, kind: OutputKind) -> str:
        """Return "Vigil <what> – <model> <version>", cut to fit a DICOM LO (64 characters)."""
        text = f"Vigil {_SERIES_LABELS[kind]} – {self.model_label}"
        return text if len(text) <= _LONG_STRING_MAX else text[: _LONG_STRING_MAX - 1] + "…"

    @property
    def device_uid(self) -> UID:
        """Return a UID naming the model itself (name, version, weights) as an SR device."""
        return derived_uid("model", self.model_name, self.model_version, self.weights_sha256)
