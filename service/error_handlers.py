"""One error shape for every route: ``{"error": "InvalidDicom", "detail": "..."}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.db import database_unavailable
from service.errors import VigilError
from service.log_config import get_logger

log = get_logger(__name__)

_HTTP_NAMES = {
    400: "BadRequest",
    401: "NotAuthenticated",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}
RETRY_AFTER_S = 5


def error_response(status_code: int, error: str, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
    return JSONResponse(
        {"error": error, "detail": detail}, status_code=status_code, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer expected errors with their reason and unexpected ones with a request id only."""

    @app.exception_handler(VigilError)
    async def vigil_error(_request: Request, exc: VigilError) -> JSONResponse:
        return error_response(exc.status_code, exc.name, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the problem; never echo the input (it may hold patient data).
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        ]
        return error_response(422, "ValidationError", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = _HTTP_NAMES.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, name, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "")
        if reason := unavailable_reason(exc, request_id):
            response = error_response(503, "ServiceUnavailable", reason)
            response.headers["retry-after"] = str(RETRY_AFTER_S)
        else:
            log.exception("request.unexpected_error", error=type(exc).__name__)
            response = error_response(
                500, "InternalError", f"unexpected error; quote request id {request_id} to support"
            )
        # This answer comes from outside the request middleware: add its id here.
        response.headers["x-request-id"] = request_id
        return response


def unavailable_reason(exc: Exception, request_id: str) -> str | None:
    """The reason to answer a 503 with (logged) when an error means the database cannot serve
    now, where a retry may succeed; None for any other error."""
    if not database_unavailable(exc):
        return None
    cause = exc.orig if isinstance(exc, OperationalError) else exc
    log.error("request.database_unavailable", error=type(cause).__name__)
    return f"the database cannot be reached or is busy; try again shortly (request id {request_id})"
