"""Send an analysis's DICOM outputs to another DICOMweb server (STOW-RS), with retries.

A destination that is down does not fail the analysis: the outcome is recorded with it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from service.dicom.multipart import iter_multipart_files, new_boundary
from service.log_config import get_logger
from service.settings import Settings

log = get_logger(__name__)

# Worth another try: the destination or the network may recover. Anything else will not.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def forward_outputs(settings: Settings, files: Sequence[Path]) -> dict[str, object]:
    """Send files to ``settings.forward_url`` and return what happened (status, attempts)."""
    assert settings.forward_url
    url = settings.forward_url.rstrip("/") + "/studies"
    boundary = new_boundary()
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    if settings.forward_token:
        headers["Authorization"] = f"Bearer {settings.forward_token}"
    detail = ""
    for attempt in range(1, settings.forward_attempts + 1):
        body = b"".join(
            iter_multipart_files([(path, "application/dicom") for path in files], boundary)
        )
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=60)
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code in (200, 202):
                status = "sent" if response.status_code == 200 else "partly sent"
                log.info("forward.sent", status=response.status_code, attempt=attempt)
                return {"status": status, "attempts": attempt, "http_status": response.status_code}
            detail = f"HTTP {response.status_code}"
            if response.status_code not in _RETRY_STATUSES:
                break
        log.warning("forward.retry", attempt=attempt, detail=detail)
        if attempt < settings.forward_attempts:
            time.sleep(settings.forward_backoff_s * 2 ** (attempt - 1))
    return {"status": "failed", "attempts": attempt, "detail": detail}
