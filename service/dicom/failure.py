"""Why an instance was not stored: a DICOM failure reason code and words for a person."""

from __future__ import annotations

from enum import IntEnum


class FailureReason(IntEnum):
    """Failure Reason (0008,1197) values that STOW-RS answers (PS3.4 / PS3.18)."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
    STUDY_INSTANCE_UID_MISMATCH = 0xC409


class InstanceRejected(Exception):
    """An instance that cannot be stored; ``reason`` is shown to the sender as it is."""

    def __init__(
        self,
        reason: str,
        code: FailureReason,
        *,
        sop_class_uid: str = "",
        sop_instance_uid: str = "",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
