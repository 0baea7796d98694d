"""UIDs Vigil needs by name, and a strict check before a UID is used in a file path."""

from __future__ import annotations

import re

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
# A DICOMDIR: the index of the files on a medium (CD, DVD, USB stick), not an instance
MEDIA_STORAGE_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(value: str) -> bool:
    """Return whether a value is a DICOM UID: digits and dots, at most 64 characters."""
    return 0 < len(value) <= 64 and _UID.match(value) is not None
