"""Every route × every role: each role reaches exactly what DESIGN.md gives it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.auth import service as auth_service
from service.auth.repository import TokenHolderQuery, get_token_holder
from service.auth.roles import Role
from service.auth.secrets import token_sha256
from service.db import session_scope
from service.orm import User
from service.runtime import Runtime
from tests.conftest import bearer

ALL = frozenset(Role)
PUBLIC_ROUTES = {("GET", "/healthz"), ("GET", "/readyz")}
STORE = frozenset({Role.INTEGRATION, Role.ADMIN})
READ_DICOM = frozenset({Role.INTEGRATION, Role.CLINICIAN, Role.ADMIN})
READ_ANALYSES = frozenset({Role.INTEGRATION, Role.CLINICIAN, Role.ADMIN})
AUDIT = frozenset({Role.AUDITOR, Role.ADMIN})
# Decisions: clinicians, and viewers on their behalf; auditors read reports, never decide.
REVIEWS = frozenset({Role.INTEGRATION, Role.CLINICIAN, Role.ADMIN})
EXPLICIT = {
    ("GET", "/api/v1/me"): ALL,
    ("GET", "/api/v1/access-log"): frozenset({Role.ADMIN}),
    ("POST", "/api/v1/studies/{study_instance_uid}/analyses"): STORE,
    ("GET", "/api/v1/studies/{study_instance_uid}/analyses"): READ_ANALYSES,
    ("GET", "/api/v1/analyses/{analysis_id}"): READ_ANALYSES,
    ("GET", "/api/v1/analyses/{analysis_id}/overlays/{kind}.png"): READ_ANALYSES,
    ("GET", "/api/v1/analyses/{analysis_id}/composite/{kind}.png"): READ_ANALYSES,
    ("POST", "/api/v1/audit/reports"): AUDIT,
    ("GET", "/api/v1/audit/reports"): AUDIT,
    ("GET", "/api/v1/audit/reports/{report_id}"): AUDIT,
    ("GET", "/api/v1/audit/reports/{report_id}/report.html"): AUDIT,
    ("GET", "/api/v1/audit/reports/{report_id}/report.csv"): AUDIT,
    ("GET", "/api/v1/audit/reports/{report_id}/report.css"): AUDIT,
    ("GET", "/api/v1/audit/reports/{report_id}/gallery/{name}"): AUDIT,
    ("GET", "/api/v1/audit/sanity"): AUDIT,
    ("GET", "/api/v1/analyses/{analysis_id}/regions.json"): READ_ANALYSES,
    ("POST", "/api/v1/analyses/{analysis_id}/reviews"): REVIEWS,
    ("GET", "/api/v1/analyses/{analysis_id}/reviews"): REVIEWS,
}


def allowed_roles(method: str, path: str) -> frozenset[Role]:
    """The roles DESIGN.md lets through; a new route must be classified here."""
    if path.startswith("/dicomweb/"):
        return STORE if method == "POST" else READ_DICOM
    try:
        return EXPLICIT[(method, path)]
    except KeyError:
        pytest.fail(f"route {method} {path} is not in the access-control matrix: add it")


def all_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every route of the API schema: the bearer-token surface. The review pages are a
    sub-app of their own outside the schema, with cookie logins and their own role tests
    (tests/test_review_pages.py)."""
    spec = client.app.openapi()  # type: ignore[attr-defined]
    return sorted(
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    )


PLACEHOLDERS = {"analysis_id": "00000000-0000-4000-8000-000000000000", "kind": "gradcam"}


def concrete(path: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return PLACEHOLDERS.get(name, "1" if "frame" in name else "1.2.3")

    return re.sub(r"\{([^}]+)\}", fill, path)


def test_the_matrix_covers_dicomweb_and_api(client: TestClient) -> None:
    routes = all_routes(client)
    assert ("POST", "/dicomweb/studies") in routes
    assert ("GET", "/api/v1/me") in routes
    for method, path in routes:
        if (method, path) not in PUBLIC_ROUTES:
            allowed_roles(method, path)


def test_every_route_except_health_needs_a_token(client: TestClient) -> None:
    for method, path in all_routes(client):
        response = client.request(method, concrete(path))
        if (method, path) in PUBLIC_ROUTES:
            assert response.status_code == 200, path
        else:
            assert response.status_code == 401, f"{method} {path}"
            assert response.json()["error"] == "NotAuthenticated"
            assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_each_role_reaches_only_its_routes(
    client: TestClient, tokens: dict[Role, str], role: Role
) -> None:
    for method, path in all_routes(client):
        if (method, path) in PUBLIC_ROUTES:
            continue
        response = client.request(method, concrete(path), headers=bearer(tokens[role]))
        if role in allowed_roles(method, path):
            assert response.status_code not in (401, 403, 500), (
                f"{role.value} should reach {method} {path}: {response.status_code}"
            )
        else:
            assert response.status_code == 403, f"{role.value} must not reach {method} {path}"
            assert role.value in response.json()["detail"]


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Bearer vgl_not-a-real-token", "unknown API token"),
        ("Basic dXNlcjpwYXNz", "must be 'Bearer <token>'"),
        ("Bearer ", "must be 'Bearer <token>'"),
    ],
)
def test_bad_credentials_are_refused_with_a_reason(
    client: TestClient, header: str, detail: str
) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert detail in response.json()["detail"]


def test_revoked_and_expired_tokens_stop_working(client: TestClient, runtime: Runtime) -> None:
    with session_scope(runtime.session_factory) as session:
        revoked, revoked_secret = auth_service.create_token(session=session, role=Role.CLINICIAN)
        _expired, expired_secret = auth_service.create_token(
            session=session, role=Role.CLINICIAN, expires_in=timedelta(seconds=-1)
        )
    assert client.get("/api/v1/me", headers=bearer(revoked_secret)).status_code == 200
    with session_scope(runtime.session_factory) as session:
        auth_service.revoke_token(session=session, prefix=revoked.prefix)
    response = client.get("/api/v1/me", headers=bearer(revoked_secret))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    response = client.get("/api/v1/me", headers=bearer(expired_secret))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_whoami_names_the_role_and_its_permissions(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    body = client.get("/api/v1/me", headers=bearer(tokens[Role.CLINICIAN])).json()
    assert body["role"] == "clinician"
    assert body["username"] == "svc-clinician"
    assert "dicom:read" in body["permissions"]
    assert "dicom:store" not in body["permissions"]


def test_a_deactivated_users_tokens_stop_working(client: TestClient, runtime: Runtime) -> None:
    with session_scope(runtime.session_factory) as session:
        user = auth_service.create_user(session=session, username="leaver", role=Role.CLINICIAN)
        _token, secret = auth_service.create_token(
            session=session, role=Role.CLINICIAN, username="leaver"
        )
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    with session_scope(runtime.session_factory) as session:
        session.get(User, user.id).is_active = False  # type: ignore[union-attr]
    response = client.get("/api/v1/me", headers=bearer(secret))
    assert response.status_code == 401
    assert "deactivated" in response.json()["detail"]


def test_the_precompiled_sqlite_token_lookup_reads_what_sqlalchemy_reads(
    runtime: Runtime,
) -> None:
    engine = runtime.session_factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        with pytest.raises(ValueError, match="no compiled statement"):
            TokenHolderQuery(engine)
        return
    with session_scope(runtime.session_factory) as session:
        auth_service.create_user(session=session, username="leaver", role=Role.AUDITOR)
        made = [
            auth_service.create_token(session=session, role=Role.CLINICIAN),
            auth_service.create_token(
                session=session, role=Role.AUDITOR, expires_in=timedelta(days=3)
            ),
            auth_service.create_token(session=session, role=Role.AUDITOR, username="leaver"),
        ]
        auth_service.revoke_token(session=session, prefix=made[0][0].prefix)
        session.scalars(select(User).where(User.username == "leaver")).one().is_active = False
    query = TokenHolderQuery(engine)
    with engine.connect() as connection:
        for _token, secret in made:
            expected = get_token_holder(connection, token_sha256(secret))
            assert expected is not None
            assert query.get(token_sha256(secret)) == expected
        assert query.get(token_sha256("no-such-token")) is None
    holders = [query.get(token_sha256(secret)) for _token, secret in made]
    assert [h.revoked_at is not None for h in holders if h] == [True, False, False]
    assert [h.expires_at is not None for h in holders if h] == [False, True, False]
    assert [h.user_is_active for h in holders if h] == [True, True, False]
    assert [h.role for h in holders if h] == [Role.CLINICIAN, Role.AUDITOR, Role.AUDITOR]
    # A lookup keeps its thread's connection; closed, it gives it back and takes another.
    pool = engine.pool
    assert pool.checkedout() == 1
    query.close()
    assert pool.checkedout() == 0
    assert query.get(token_sha256(made[1][1])) == holders[1]
    query.close()
