"""Bearer-token lookups made on the event loop, without a hop to a worker thread and back.

Every authenticated request looks its token up. Run in FastAPI's thread pool, the hop there
and back cost more than the lookup itself. On SQLite the lookup (a local indexed read) runs
on the loop itself, precompiled, on a connection of the loop's own: waiting there for a
pooled connection that request threads hold would stall every request. On a database server
it is awaited on an asyncio connection of its own (``server_token_query``), so the loop
serves others meanwhile.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import SingletonThreadPool

from service.auth.repository import TokenHolderQuery
from service.auth.secrets import token_sha256
from service.auth.server_token_query import ServerTokenQuery
from service.auth.service import Principal, principal_of_holder
from service.db import create_db_engine
from service.loop_database import LoopDatabase


class TokenLookup:
    """Authenticates bearer tokens for one app; ``close`` it when the app stops."""

    def __init__(self, database_url: str, loop_database: LoopDatabase | None = None) -> None:
        """``loop_database``: the app's loop connection to share (SQLite); else one of its own."""
        self._local: Engine | None = None
        self._local_query: TokenHolderQuery | None = None
        self._server: ServerTokenQuery | None
        if loop_database is not None:
            self._local_query = TokenHolderQuery(loop_database.engine)
            self._server = None
        elif make_url(database_url).get_backend_name() == "sqlite":
            # One connection per thread: in practice the event loop's own.
            self._local = create_db_engine(database_url, poolclass=SingletonThreadPool)
            self._local_query = TokenHolderQuery(self._local)
            self._server = None
        else:
            self._local = None
            self._server = ServerTokenQuery(database_url)

    async def authenticate(self, secret: str) -> Principal:
        """Return the principal a token stands for; raise NotAuthenticated otherwise."""
        if self._local_query is not None:
            return principal_of_holder(self._local_query.get(token_sha256(secret)))
        assert self._server is not None
        return principal_of_holder(await self._server.get(token_sha256(secret)))

    async def close(self) -> None:
        if self._local_query is not None:
            self._local_query.close()
        if self._local is not None:
            self._local.dispose()
        if self._server is not None:
            await self._server.close()
