"""Cross-origin calls from web viewers (``VIGIL_CORS_ORIGINS``) to DICOMweb and the API.

A viewer served from another origin (OHIF on its own host, say) calls Vigil from the browser
with a bearer token: the browser asks first (a preflight) and reads the answers only when
Vigil names its origin. Only the listed origins are named, never "*", and only for the
machine routes: the review pages (cookie logins) stay same-origin. No credentials mode:
a bearer token is sent by the viewer's code, never a cookie by the browser.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

_MACHINE_ROUTES = ("/dicomweb/", "/api/")


class MachineRoutesCors:
    """Answer preflights and add CORS headers for the listed origins, on machine routes."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Content-Location"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/dicomweb" or path.startswith(_MACHINE_ROUTES):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
