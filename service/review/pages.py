"""The review pages: their own small app, mounted at /review, with their own error page.

People log in with a password and carry a session cookie; bearer tokens mean nothing here.
Errors are pages (never a traceback); a missing or ended login is a redirect to the login
page that comes back to where the person was.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.audit import pages as audit_pages
from service.auth.web_sessions import LoginRequired
from service.error_handlers import RETRY_AFTER_S, unavailable_reason
from service.errors import VigilError
from service.log_config import get_logger
from service.review import image_endpoints, login_endpoints, study_endpoints, worklist_endpoints
from service.review.rendering import BASE, STATIC_DIR, render
from service.security_headers import SECURITY_HEADERS

log = get_logger(__name__)

_SECURITY_HEADERS = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


ROUTERS = (
    login_endpoints.router,
    worklist_endpoints.router,
    study_endpoints.router,
    image_endpoints.router,
    audit_pages.router,  # the auditor's page, /review/audit
)


def create_pages_app(state: State) -> FastAPI:
    """Return the pages app; it shares the main app's state (settings, database, archive)."""
    pages = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    pages.state = state
    _install_error_pages(pages)
    for router in ROUTERS:
        pages.include_router(router)
    pages.mount("/static", VersionedStatic(directory=STATIC_DIR), name="static")
    pages.add_middleware(SecurityHeaders)
    return pages


class VersionedStatic(StaticFiles):
    """Static files; a URL with the content hash (``?v=``) may be cached for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        versioned = b"v=" in scope.get("query_string", b"")
        response.headers["cache-control"] = (
            "public, max-age=31536000, immutable" if versioned else "no-cache"
        )
        return response


class SecurityHeaders:
    """Add the pages' security headers to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(_SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _install_error_pages(pages: FastAPI) -> None:
    @pages.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = urlencode({"next": here, "why": exc.code})
        return RedirectResponse(f"{BASE}/login?{query}", status_code=303)

    @pages.exception_handler(VigilError)
    async def vigil_error(request: Request, exc: VigilError) -> Response:
        return error_page(request, exc.status_code, exc.name, exc.message)

    @pages.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # Name the field and the problem; never echo the input (it may hold patient data).
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p not in ('query', 'body'))}: "
            f"{err.get('msg', 'invalid')}"
            for err in exc.errors()
        ]
        return error_page(request, 400, "BadRequest", "; ".join(problems) or "invalid request")

    @pages.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = "there is no such page" if exc.status_code == 404 else str(exc.detail)
        return error_page(request, exc.status_code, "HTTPError", detail)

    @pages.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", "")
        if reason := unavailable_reason(exc, request_id):
            response = error_page(request, 503, "ServiceUnavailable", reason)
            response.headers["retry-after"] = str(RETRY_AFTER_S)
        else:
            log.exception("pages.unexpected_error", error=type(exc).__name__)
            response = error_page(
                request,
                500,
                "InternalError",
                f"something went wrong on our side; quote request id {request_id} to support",
            )
        # This answer comes from outside the request middleware: add its id here.
        response.headers["x-request-id"] = request_id
        return response


def error_page(request: Request, status_code: int, error: str, detail: str) -> Response:
    """Return the error page, or JSON to a script that asked for JSON."""
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return JSONResponse({"error": error, "detail": detail}, status_code=status_code)
    response: HTMLResponse = render(
        request,
        "error.html",
        {"status_code": status_code, "error": error, "detail": detail},
        status_code=status_code,
    )
    return response
