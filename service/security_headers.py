"""Headers that keep a browser from running or framing anything a page does not mean to: the
review pages carry them, and so do the audit API's report files, whose HTML holds values any
DICOM sender chose (InstitutionName, StationName: escaped, and refused scripts all the same).
"""

from __future__ import annotations

# Scripts, styles and images from this server only; no inline script, no framing.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
