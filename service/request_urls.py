"""The URL a request reached Vigil at: the base of the retrieve URLs answers carry."""

from __future__ import annotations

from functools import lru_cache

from starlette.requests import Request

from service.settings import Settings


def request_base_url(request: Request, settings: Settings) -> str:
    """Return ``VIGIL_BASE_URL`` or, unset, the base URL as the request names it (Starlette's
    ``request.base_url``, with its checks of the Host header), without a trailing slash."""
    if settings.base_url:
        return settings.base_url
    scope = request.scope
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    server = scope.get("server")
    return _base_url(
        scope.get("scheme", "http"),
        host,
        None if server is None else tuple(server),
        scope.get("app_root_path", scope.get("root_path", "")),
    )


@lru_cache(maxsize=64)  # parsing a URL costs more than the rest of a small answer
def _base_url(
    scheme: str, host: bytes | None, server: tuple[str, int] | None, root_path: str
) -> str:
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "path": "/",
        "root_path": root_path,
        "query_string": b"",
        "headers": [] if host is None else [(b"host", host)],
    }
    return str(Request(scope).base_url).rstrip("/")
