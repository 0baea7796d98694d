"""Which server process resumes the analyses an earlier run left unfinished: only one.

``vigil serve --workers N`` starts N processes on one var folder and database, each with its
own in-process job queue. Each used to queue every unfinished analysis again at start-up, so
each such analysis ran N times. Now the process that takes the var folder's resume lock does it,
and holds the lock while it runs: the others, started beside it, leave those analyses to it.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: there every process resumes, as before
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "analysis-resume.lock"


class ResumeTurn:
    """The held resume lock of one process; ``release`` (or the process's end) gives it up."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def take(cls, var_dir: Path) -> ResumeTurn | None:
        """Return the turn, or None when another process (or app) holds it now."""
        if fcntl is None:
            return cls(None)
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(var_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None
