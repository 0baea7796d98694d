"""Answer the simplest routes without FastAPI's routing and dependency machinery.

FastAPI matches a request against every included router, then solves the endpoint's
dependencies through its general machinery: for a DICOMweb retrieve or search, measured here,
that cost about a third of the server's CPU per request. ``DirectRoutes`` answers a route
itself when all of its endpoint's parameters are of a few plain kinds:

- path parameters typed ``str`` (FastAPI does no conversion or validation on those either),
- the ``Request``,
- Vigil's own dependencies: a permission (``require``), the settings, the session factory,
  the archive.

Such a route is the same code either way: the endpoint function FastAPI registered, called
with the same arguments, its errors answered by the same ``error_response`` as the app's
``VigilError`` handler. Every other route (query parameters, bodies FastAPI parses, other
dependencies, plain ``def`` endpoints) goes to FastAPI as before; so does a route whose
endpoint changes to need any of those. The OpenAPI schema is FastAPI's, unchanged.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.params import Depends
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth.dependencies import PermissionCheck, check_permission, get_principal
from service.auth.service import Principal
from service.deps import get_archive, get_session_factory_dep, get_settings_dep
from service.error_handlers import error_response
from service.errors import VigilError

_STATE_DEPENDENCIES: dict[Callable[..., Any], str] = {
    get_settings_dep: "settings",
    get_session_factory_dep: "session_factory",
    get_archive: "archive",
}
_Argument = Callable[[Request, dict[str, str], list[Principal]], Awaitable[Any]]


@dataclass(frozen=True)
class DirectRoute:
    """A route answered directly: its FastAPI route, its path pattern, its argument makers."""

    route: APIRoute
    methods: frozenset[str]
    pattern: re.Pattern[str]
    arguments: tuple[tuple[str, _Argument], ...]


def direct_route(route: APIRoute, prefix: str = "") -> DirectRoute | None:
    """Return how to answer a route (included under ``prefix``) directly, or None when
    FastAPI must (see the module)."""
    endpoint = route.endpoint
    if not inspect.iscoroutinefunction(endpoint) or route.dependencies:
        return None
    try:
        hints = typing.get_type_hints(endpoint, include_extras=True)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: leave it to FastAPI
        return None
    returns = hints.pop("return", None)
    if not (inspect.isclass(returns) and issubclass(returns, Response)):
        return None
    arguments: list[tuple[str, _Argument]] = []
    for name in inspect.signature(endpoint).parameters:
        argument = _argument(name, hints.get(name), set(route.param_convertors))
        if argument is None:
            return None
        arguments.append((name, argument))
    return DirectRoute(
        route=route,
        methods=frozenset(route.methods or ()) - {"HEAD"},
        pattern=compile_path(prefix + route.path)[0],
        arguments=tuple(arguments),
    )


def _argument(name: str, hint: Any, path_names: set[str]) -> _Argument | None:
    if hint is Request:
        return _request
    if hint is str and name in path_names:
        return _path_value(name)
    if typing.get_origin(hint) is not typing.Annotated:
        return None
    marks = [m for m in typing.get_args(hint)[1:] if isinstance(m, Depends)]
    if len(marks) != 1:
        return None
    dependency = marks[0].dependency
    if isinstance(dependency, PermissionCheck):
        return _permitted(dependency)
    if dependency is not None and dependency in _STATE_DEPENDENCIES:
        return _state_value(_STATE_DEPENDENCIES[dependency])
    return None


async def _request(request: Request, _path: dict[str, str], _caller: list[Principal]) -> Any:
    return request


def _path_value(name: str) -> _Argument:
    async def value(_request: Request, path: dict[str, str], _caller: list[Principal]) -> Any:
        return path[name]

    return value


def _state_value(attribute: str) -> _Argument:
    async def value(request: Request, _path: dict[str, str], _caller: list[Principal]) -> Any:
        return getattr(request.app.state, attribute)

    return value


def _permitted(check: PermissionCheck) -> _Argument:
    async def value(request: Request, _path: dict[str, str], caller: list[Principal]) -> Any:
        if not caller:  # looked up once per request, as FastAPI caches it
            caller.append(await get_principal(request))
        return check_permission(caller[0], check.permission)

    return value


@dataclass(frozen=True)
class _Passed:
    """A route of the given routers that FastAPI answers: a request it matches goes there."""

    methods: frozenset[str]
    pattern: re.Pattern[str]


class DirectRoutes:
    """ASGI middleware: answer the direct routes (see the module) of some routers, pass on
    everything else.

    ``routers`` are (prefix, router) pairs as the app includes them, and must be the app's
    first routes whose paths can match theirs: FastAPI picks the first route that matches,
    and so does this, among their routes, direct or not. Installed inside the
    request-context middleware, so the request id and the request's log line (which names
    the route's path template) are the same on both paths.
    """

    def __init__(self, app: ASGIApp, routers: Sequence[tuple[str, APIRouter]]) -> None:
        self.app = app
        self._routes: list[DirectRoute | _Passed] = []
        for prefix, router in routers:
            for route in router.routes:
                if not isinstance(route, APIRoute):
                    raise TypeError(f"{route!r}: only plain API routes are expected here")
                self._routes.append(
                    direct_route(route, prefix)
                    or _Passed(frozenset(route.methods or ()), compile_path(prefix + route.path)[0])
                )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self._match(scope)
            if found is not None:
                await self._answer(*found, scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _match(self, scope: Scope) -> tuple[DirectRoute, dict[str, str]] | None:
        """Return the route FastAPI would pick, with its path values, if it is a direct one."""
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        method = scope["method"]
        for entry in self._routes:
            match = entry.pattern.match(path)
            if match is None:
                continue
            if isinstance(entry, DirectRoute):
                if method in entry.methods:
                    return entry, match.groupdict()
                if method in (entry.route.methods or ()):
                    return None  # HEAD: FastAPI's
            elif method in entry.methods:
                return None
        return None

    async def _answer(
        self, direct: DirectRoute, path: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        scope["route"] = direct.route  # what the request's log line names
        scope["endpoint"] = direct.route.endpoint
        scope["path_params"] = path
        request = Request(scope, receive)
        caller: list[Principal] = []
        try:
            arguments = {name: await make(request, path, caller) for name, make in direct.arguments}
            response: Response = await direct.route.endpoint(**arguments)
        except VigilError as exc:
            response = error_response(exc.status_code, exc.name, exc.message)
        await response(scope, receive, send)
