"""Pooled PostgreSQL connections: one the server dropped is replaced before a request uses it
(the main pool and the token lookups' asyncio connections)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine.interfaces import DBAPIConnection

from service.auth import repository
from service.auth import service as auth_service
from service.auth.repository import TokenHolder
from service.auth.roles import Role
from service.auth.secrets import token_sha256
from service.auth.server_token_query import ServerTokenQuery
from service.auth.token_lookup import TokenLookup
from service.db import create_db_engine, session_scope
from service.errors import NotAuthenticated
from service.runtime import Runtime
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs VIGIL_TEST_DATABASE_URL")


def _backend_pid(engine_url: str, *, ping_after_idle_s: float) -> tuple[int, int]:
    """Return the server process of a pooled connection before and after the server drops it."""
    engine = create_db_engine(engine_url, ping_after_idle_s=ping_after_idle_s, pool_size=1)
    try:
        with engine.connect() as conn:
            before = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        admin = create_engine(engine_url)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        admin.dispose()
        time.sleep(ping_after_idle_s + 0.2)  # the pooled connection lies idle past the limit
        with engine.connect() as conn:
            after = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return before, after
    finally:
        engine.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_use() -> None:
    before, after = _backend_pid(POSTGRES_URL, ping_after_idle_s=0.3)
    assert after != before


def test_a_connection_in_steady_use_is_not_pinged(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_db_engine(POSTGRES_URL, ping_after_idle_s=60, pool_size=1)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection: DBAPIConnection) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    try:
        for _ in range(5):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        assert pings == []
    finally:
        engine.dispose()


def test_a_token_lookup_connection_the_server_dropped_is_replaced() -> None:
    async def scenario() -> tuple[list[int], list[int], str]:
        lookup = TokenLookup(POSTGRES_URL)
        server = lookup._server
        assert server is not None
        try:
            with pytest.raises(NotAuthenticated):
                await lookup.authenticate("vgl_no-such-token")  # opens a connection
            before = server.backend_pids()
            admin = create_engine(POSTGRES_URL)
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before[0]})
            admin.dispose()
            await asyncio.sleep(0.2)
            with pytest.raises(NotAuthenticated) as refused:  # answered: the lookup ran
                await lookup.authenticate("vgl_no-such-token")
            return before, server.backend_pids(), refused.value.message
        finally:
            await lookup.close()

    before, after, detail = asyncio.run(scenario())
    assert len(before) == len(after) == 1
    assert after != before
    assert detail == "unknown API token"


def test_the_server_token_lookup_reads_what_sqlalchemy_reads(runtime: Runtime) -> None:
    with session_scope(runtime.session_factory) as session:
        auth_service.create_user(session=session, username="lookup-check", role=Role.AUDITOR)
        _token, secret = auth_service.create_token(
            session=session,
            role=Role.AUDITOR,
            username="lookup-check",
            expires_in=timedelta(days=3),
        )
    with runtime.engine.connect() as connection:
        expected = repository.get_token_holder(connection, token_sha256(secret))
    query = ServerTokenQuery(runtime.settings.database_url)

    async def looked_up() -> tuple[TokenHolder | None, TokenHolder | None]:
        try:
            return await query.get(token_sha256(secret)), await query.get("0" * 64)
        finally:
            await query.close()

    found, missing = asyncio.run(looked_up())
    assert expected is not None and found == expected
    assert isinstance(found.role, Role) and found.expires_at is not None
    assert missing is None
