"""One-row INSERTs on SQLite, compiled once and run straight on the driver.

Every read of patient data commits an access-log row before it answers. Through a SQLAlchemy
connection that row cost a BEGIN, the statement's execution context and a COMMIT, several
times the INSERT's own time. Here it is the same SQL, compiled once per statement and set of
columns, each value converted by the bind processor SQLAlchemy itself would apply, run as one
statement in the driver's autocommit mode (the engine's connections have no implicit
transactions: see ``db._sqlite_pragmas``), which is its own transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Insert
from sqlalchemy.exc import DBAPIError


class CompiledInsert:
    """An INSERT of one row with a fixed set of columns, ready to run on the driver."""

    def __init__(self, engine: Engine, statement: Insert, columns: frozenset[str]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect, column_keys=sorted(columns))
        if dialect.paramstyle != "qmark" or compiled.positiontup is None:
            raise ValueError(f"no compiled one-row insert for {dialect.name}")
        if compiled.insert_prefetch or compiled.postfetch or compiled.returning:
            # Defaults computed in Python, or values read back: SQLAlchemy's own path does those.
            raise ValueError("this insert needs values the database path computes")
        self._engine = engine
        self._sql = str(compiled)
        self._order = list(compiled.positiontup)
        self._processors: list[Callable[[Any], Any] | None] = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._order
        ]

    def run(self, values: Mapping[str, Any]) -> None:
        """Insert the row; raise SQLAlchemy's DBAPIError for a database error, as it would."""
        row = [
            value if process is None else process(value)
            for process, value in zip(
                self._processors, (values[n] for n in self._order), strict=True
            )
        ]
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, row)
            finally:
                cursor.close()
        except self._engine.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                self._sql, row, exc, self._engine.dialect.loaded_dbapi.Error
            ) from exc
        finally:
            connection.close()  # back to the pool


_compiled: WeakKeyDictionary[Engine, dict[tuple[Insert, frozenset[str]], CompiledInsert | None]]
_compiled = WeakKeyDictionary()


def compiled_insert(
    engine: Engine, statement: Insert, values: Mapping[str, Any]
) -> CompiledInsert | None:
    """Return the statement compiled for these values' columns, or None when it cannot be
    (then run it through SQLAlchemy)."""
    key = (statement, frozenset(values))
    known = _compiled.setdefault(engine, {})
    if key not in known:
        try:
            known[key] = CompiledInsert(engine, statement, key[1])
        except ValueError:
            known[key] = None
    return known[key]
