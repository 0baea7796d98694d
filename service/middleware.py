"""Per-request correlation id and one log line per request (path template, no query string)."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.error_handlers import error_response
from service.log_config import get_logger
from service.text_values import NUL_REFUSED

log = get_logger("service.request")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_in_flight = [0]  # HTTP requests this process is answering now, this one included
CLIENT_CLOSED_REQUEST = 499  # the status logged for a request its client abandoned (nginx's)


def requests_in_flight() -> int:
    """Return how many HTTP requests this process is answering now (a hint for where to do
    work: with none other waiting, handing work to a thread only adds the trip's cost)."""
    return _in_flight[0]


class RequestContextMiddleware:
    """Bind a request id to every log line of a request and return it as X-Request-ID."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "HEAD":
            # Answered as its GET (HTTP: wherever GET is, HEAD is too; a load balancer's
            # health check may use it); the server sends the head and drops the body.
            scope = {**scope, "method": "GET"}
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(
                    (b"x-request-id", request_id.encode("latin-1"))
                )
            await send(message)

        _in_flight[0] += 1
        try:
            if b"%00" in scope.get("query_string", b""):
                # PostgreSQL cannot hold NUL in text: a search or filter carrying one failed
                # its statement (a 500). Refused here for every route, on every database.
                await error_response(400, "BadRequest", f"query parameters {NUL_REFUSED}")(
                    scope, receive, send_with_id
                )
                return
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client left mid-request (an upload cancelled, a network dropped): nobody
            # to answer, and no error of ours; what it sent was not stored (a STOW-RS request
            # stores nothing before its whole body is in).
            status = CLIENT_CLOSED_REQUEST
            log.info("request.client_disconnected")
        finally:
            _in_flight[0] -= 1
            route = scope.get("route")
            log.info(
                "request.completed",
                method=method,
                route=getattr(route, "path", "unmatched"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
