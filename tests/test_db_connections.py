"""Pooled PostgreSQL connections: one the server dropped is replaced before a request uses it
(the main pool and the token lookups' asyncio pool)."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine.interfaces import DBAPIConnection

from service.auth.token_lookup import TokenLookup
from service.db import PING_AFTER_IDLE_S, create_db_engine
from service.errors import NotAuthenticated
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


def test_a_token_lookup_connection_dropped_while_idle_is_replaced() -> None:
    async def scenario() -> tuple[int, int, str]:
        lookup = TokenLookup(POSTGRES_URL)
        server = lookup._server
        assert server is not None
        try:
            async with server.connect() as conn:
                before = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            admin = create_engine(POSTGRES_URL)
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
            admin.dispose()
            await asyncio.sleep(PING_AFTER_IDLE_S + 0.2)
            with pytest.raises(NotAuthenticated) as refused:  # answered: the lookup ran
                await lookup.authenticate("vgl_no-such-token")
            async with server.connect() as conn:
                after = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            return before, after, refused.value.message
        finally:
            await lookup.close()

    before, after, detail = asyncio.run(scenario())
    assert after != before
    assert detail == "unknown API token"
