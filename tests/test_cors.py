"""Web viewers on the origins VIGIL_CORS_ORIGINS lists may call DICOMweb and the API from the
browser; no other origin, and never the review pages; none at all by default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.auth.roles import Role
from service.settings import Settings

VIEWER = "https://viewer.example.org"


@pytest.fixture
def cors_client(settings: Settings) -> Iterator[TestClient]:
    allowed = settings.model_copy(update={"cors_origins": [VIEWER]})
    with TestClient(create_app(allowed)) as test_client:
        yield test_client


def preflight(client: TestClient, path: str, origin: str) -> dict[str, str]:
    response = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    return dict(response.headers) | {"status": str(response.status_code)}


def test_a_listed_viewer_may_call_dicomweb_and_the_api(
    cors_client: TestClient, tokens: dict[Role, str]
) -> None:
    for path in ("/dicomweb/studies", "/api/v1/me"):
        asked = preflight(cors_client, path, VIEWER)
        assert asked["status"] == "200", asked
        assert asked["access-control-allow-origin"] == VIEWER
        assert "authorization" in asked["access-control-allow-headers"].lower()
    answer = cors_client.get(
        "/dicomweb/studies",
        headers={"Origin": VIEWER, "Authorization": f"Bearer {tokens[Role.CLINICIAN]}"},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == VIEWER
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    refused = cors_client.get("/dicomweb/studies", headers={"Origin": VIEWER})
    assert refused.status_code == 401  # the token is still what grants access
    assert refused.headers["access-control-allow-origin"] == VIEWER  # readable by the viewer


def test_other_origins_and_the_review_pages_get_no_cors(
    cors_client: TestClient, client: TestClient, tokens: dict[Role, str]
) -> None:
    other = preflight(cors_client, "/dicomweb/studies", "https://elsewhere.example.com")
    assert other["status"] == "400" and "access-control-allow-origin" not in other
    page = cors_client.get("/review/login", headers={"Origin": VIEWER})
    assert "access-control-allow-origin" not in page.headers
    default = client.get(
        "/dicomweb/studies",
        headers={"Origin": VIEWER, "Authorization": f"Bearer {tokens[Role.CLINICIAN]}"},
    )
    assert default.status_code == 200
    assert "access-control-allow-origin" not in default.headers  # none unless listed


@pytest.mark.parametrize("origin", ["*", "viewer.example.org", "https://viewer.example.org/ohif"])
def test_an_origin_must_be_scheme_and_host(settings: Settings, origin: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings.model_validate(settings.model_dump() | {"cors_origins": [origin]})
