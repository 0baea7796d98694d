"""Vigil's local codes: findings and free-form region names, which no standard terminology has.

A "99" coding scheme designator is private by definition (PS3.16 8.2); PS3.3 C.12.1.1.2 asks
that an object using one declares it in its Coding Scheme Identification Sequence.
"""

from __future__ import annotations

import re

import highdicom as hd

LOCAL_SCHEME = "99VIGIL"
LOCAL_SCHEME_ITEM = hd.coding_schemes.CodingSchemeIdentificationItem(
    designator=LOCAL_SCHEME,
    name="Vigil findings and regions",
    responsible_organization="Vigil",
)
_MEANING_MAX = 64  # DICOM LO


def finding_code(name: str) -> hd.sr.CodedConcept:
    """Return the local code of a finding or region name (value: its lower-case slug)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug or len(name) > _MEANING_MAX:
        raise ValueError(f"cannot code the name {name!r} (empty, or over 64 characters)")
    return hd.sr.CodedConcept(value=slug, scheme_designator=LOCAL_SCHEME, meaning=name)
