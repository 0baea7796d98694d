"""Structured JSON logging with a correlation id per request (structlog)."""

from __future__ import annotations

import logging
import sys
import warnings

import structlog

_configured = False


class _CurrentStderr:
    """Writes to whatever sys.stderr is now (test captures and redirections swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _CurrentStderr()


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Send structlog and stdlib logs as one JSON object per line to stderr."""
    global _configured
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # other libraries' exceptions as text
            renderer,
        ],
    )
    handler = logging.StreamHandler(_STDERR)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # uvicorn's access log prints the query string, which can carry patient names (QIDO):
    # Vigil writes its own request log without it.
    logging.getLogger("uvicorn.access").disabled = True
    # HTTP client libraries log full URLs, query strings included.
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # highdicom narrates every output it builds at INFO, naming the source's SOP Instance UID
    # (seven lines per analysis): Vigil's own lines name no DICOM identifiers.
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    # pydicom warns about, and logs, each malformed value it reads, quoting the value (UIDs,
    # numbers, character sets), and logs each decoder's failure with its traceback before it
    # raises one error naming them all: Vigil reports that error itself (a refusal's reason,
    # a failed analysis, a 406), so pydicom's own lines are left out.
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="pydicom")
    # Other libraries' warnings become log lines (JSON), not bare text on stderr.
    logging.captureWarnings(True)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """Return a structlog logger for a module."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]
