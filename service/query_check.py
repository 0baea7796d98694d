"""The API refuses query parameters its routes do not take, as QIDO-RS does.

FastAPI ignores them: an auditor's ``/access-log?until=…`` or ``?action=…`` (filters the route
does not have) answered every row, as if filtered. A 400 names the parameter and what the
route takes instead.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.routing import APIRoute

from service.errors import BadRequest


async def refuse_unknown_query_parameters(request: Request) -> None:
    """A dependency of every /api/v1 route: 400 for a query parameter the route lacks (async:
    a check this small runs on the loop, not on a worker thread)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = _query_parameters(route)
    unknown = sorted({name for name in request.query_params if name not in known})
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise BadRequest(
            f"unknown query parameter {', '.join(repr(n[:40]) for n in unknown[:5])}; "
            f"this route takes: {takes}"
        )


def _query_parameters(route: APIRoute) -> set[str]:
    """The query parameters a route and its dependencies take (their names as sent); a walk
    of a few dependants, done only for requests that carry a query."""
    names: set[str] = set()
    dependants = [route.dependant]
    while dependants:
        dependant = dependants.pop()
        names.update(field.alias for field in dependant.query_params)
        dependants.extend(dependant.dependencies)
    return names
