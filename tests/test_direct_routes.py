"""Routes answered without FastAPI's machinery: which ones, and the same answers as FastAPI's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.auth.roles import Role
from service.dicom.endpoints import routers as dicomweb_routers
from service.direct_routes import DirectRoute, DirectRoutes, direct_route
from tests.conftest import bearer
from tests.factories import make_cr, multipart_body, stow_headers, to_bytes

INSTANCE = "/studies/{study_instance_uid}/series/{series_instance_uid}/instances/{sop_instance_uid}"
DIRECT = {
    ("GET", "/studies/{study_instance_uid}"),
    ("GET", "/studies/{study_instance_uid}/series/{series_instance_uid}"),
    (
        "GET",
        "/studies/{study_instance_uid}/series/{series_instance_uid}/instances/{sop_instance_uid}",
    ),
    ("GET", "/studies/{study_instance_uid}/metadata"),
    ("GET", "/studies/{study_instance_uid}/series/{series_instance_uid}/metadata"),
    ("GET", INSTANCE + "/metadata"),
    ("GET", "/studies"),
    ("GET", "/series"),
    ("GET", "/instances"),
    ("GET", "/studies/{study}/series"),
    ("GET", "/studies/{study}/instances"),
    ("GET", "/studies/{study}/series/{series}/instances"),
    ("POST", "/studies"),
    ("POST", "/studies/{study_instance_uid}"),
}


def test_the_dicomweb_routes_answered_directly() -> None:
    direct: set[tuple[str, str]] = set()
    passed: set[tuple[str, str]] = set()
    for router in dicomweb_routers:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            methods = sorted(route.methods or ())
            assert len(methods) == 1
            key = (methods[0], route.path)
            (direct if direct_route(route, "/dicomweb") else passed).add(key)
    assert direct == DIRECT
    # Rendered images and frames: plain ``def`` endpoints with query parameters.
    assert all(path.endswith(("/rendered", "}")) for _method, path in passed)
    assert len(passed) == 3


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path templates of the requests DirectRoutes answered."""
    seen: list[str] = []
    real = DirectRoutes._answer

    async def spy(self: DirectRoutes, direct: DirectRoute, *args: Any) -> None:
        seen.append(direct.route.path)
        await real(self, direct, *args)

    monkeypatch.setattr(DirectRoutes, "_answer", spy)
    return seen


def test_dicomweb_requests_go_the_direct_way_and_others_to_fastapi(
    client: TestClient, integration_token: str, answered: list[str]
) -> None:
    ds = make_cr()
    headers = stow_headers(integration_token)
    stored = client.post(
        "/dicomweb/studies", content=multipart_body([to_bytes(ds)]), headers=headers
    )
    assert stored.status_code == 200, stored.text
    instance = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    auth = bearer(integration_token)
    assert client.get("/dicomweb/studies", headers=auth).status_code == 200
    assert client.get(instance, headers=auth).status_code == 200
    assert client.get(instance + "/rendered", headers=auth).status_code == 200
    assert client.get("/api/v1/me", headers=auth).status_code == 200
    assert answered == [
        "/studies",
        "/studies",
        INSTANCE,
    ]
    assert stored.headers["x-request-id"]  # the request context is around both ways


def _fastapi_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DirectRoutes, "_match", lambda _self, _scope: None)


def _comparable(response: Any) -> tuple[int, str, str | None, Any]:
    is_json = "json" in response.headers.get("content-type", "") and response.content
    body = response.json() if is_json else None
    return (
        response.status_code,
        response.headers.get("content-type", ""),
        response.headers.get("www-authenticate"),
        body,
    )


def test_errors_are_the_same_as_fastapis(
    client: TestClient, tokens: dict[Role, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = make_cr()
    reader = bearer(tokens[Role.CLINICIAN])
    unknown = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    requests: list[Callable[[], Any]] = [
        lambda: client.get("/dicomweb/studies"),  # no token: 401
        lambda: client.get("/dicomweb/studies", headers={"Authorization": "Basic x"}),  # 401
        lambda: client.get("/dicomweb/studies", headers=bearer("not-a-token")),  # 401
        lambda: client.get(unknown, headers=bearer(tokens[Role.AUDITOR])),  # 403
        lambda: client.get(unknown, headers=reader),  # 404
        lambda: client.get(unknown + "/metadata", headers=reader | {"Accept": "image/png"}),
        lambda: client.get("/dicomweb/studies/not-a-uid/series", headers=reader),  # 400
        lambda: client.get("/dicomweb/studies?limit=-1", headers=reader),  # 400
        lambda: client.post("/dicomweb/studies", content=b"x", headers=reader),  # 403
        lambda: client.post(
            "/dicomweb/studies",
            content=b"x",
            headers=bearer(tokens[Role.INTEGRATION]) | {"Content-Type": "text/plain"},
        ),  # 415
        lambda: client.head("/dicomweb/studies", headers=reader),  # FastAPI's either way
        lambda: client.delete("/dicomweb/studies", headers=reader),  # 405
    ]
    direct = [_comparable(send()) for send in requests]
    _fastapi_only(monkeypatch)
    through_fastapi = [_comparable(send()) for send in requests]
    assert direct == through_fastapi
    assert [status for status, *_ in direct][:10] == [
        401,
        401,
        401,
        403,
        404,
        406,
        400,
        400,
        403,
        415,
    ]


def test_the_first_matching_route_decides_as_in_fastapi(answered: list[str]) -> None:
    router = APIRouter()

    @router.get("/items/special")
    def special() -> PlainTextResponse:  # plain def: FastAPI's
        return PlainTextResponse("special")

    @router.get("/items/{name}")
    async def item(name: str, request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"item {name} at {request.url.path}")

    @router.get("/items/{name}/filtered")
    async def filtered(name: str, q: str) -> PlainTextResponse:  # a query parameter
        return PlainTextResponse(f"{name} {q}")

    app = FastAPI()
    app.add_middleware(DirectRoutes, routers=[("/x", router)])
    app.include_router(router, prefix="/x")
    with TestClient(app) as client:
        assert client.get("/x/items/special").text == "special"
        assert client.get("/x/items/one").text == "item one at /x/items/one"
        assert client.get("/x/items/one/filtered?q=2").text == "one 2"
        assert client.get("/x/items/one/filtered").status_code == 422  # FastAPI validates
    assert answered == ["/items/{name}"]
