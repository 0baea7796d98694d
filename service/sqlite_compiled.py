"""Statements on SQLite's hot paths, compiled once and run straight on the driver.

Every request looks its token up, and every read of patient data commits an access-log row
before it answers. Through a SQLAlchemy connection each cost a BEGIN, the statement's
execution context and a COMMIT or ROLLBACK: several times the statement's own time. Here it
is the same SQL, compiled once per statement (and set of columns), each value converted by
the bind and result processors SQLAlchemy itself would apply, run as one statement in the
driver's autocommit mode (the engine's connections have no implicit transactions: see
``db._sqlite_pragmas``), which is its own transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Insert, Select
from sqlalchemy.exc import DBAPIError


class _Compiled:
    """A statement compiled for an SQLite engine, with its values' bind processors."""

    def __init__(
        self,
        engine: Engine,
        statement: Insert | Select[*tuple[Any, ...]],
        columns: frozenset[str] | None,
    ) -> None:
        dialect = engine.dialect
        keys = sorted(columns) if columns is not None else None
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        if dialect.paramstyle != "qmark" or compiled.positiontup is None:
            raise ValueError(f"no compiled statement for {dialect.name}")
        computed = ("insert_prefetch", "postfetch", "returning")  # an INSERT's, when there
        if any(getattr(compiled, name, None) for name in computed):
            # Defaults computed in Python, or values read back: SQLAlchemy's own path does those.
            raise ValueError("this statement needs values the database path computes")
        self._engine = engine
        self._sql = str(compiled)
        self._order = list(compiled.positiontup)
        self._binders: list[Callable[[Any], Any] | None] = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._order
        ]

    def _execute(self, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run the statement; return its first row, if any. A database error is raised as
        SQLAlchemy's DBAPIError, as SQLAlchemy would raise it."""
        params = [
            value if bind is None else bind(value)
            for bind, value in zip(self._binders, (values[n] for n in self._order), strict=True)
        ]
        error = self._engine.dialect.loaded_dbapi.Error
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                row: tuple[Any, ...] | None = cursor.execute(self._sql, params).fetchone()
                return row
            finally:
                cursor.close()
        except error as exc:
            raise DBAPIError.instance(self._sql, params, exc, error) from exc
        finally:
            connection.close()  # back to the pool


class CompiledInsert(_Compiled):
    """An INSERT of one row with a fixed set of columns."""

    def __init__(self, engine: Engine, statement: Insert, columns: frozenset[str]) -> None:
        super().__init__(engine, statement, columns)

    def run(self, values: Mapping[str, Any]) -> None:
        """Insert the row (column name → value)."""
        self._execute(values)


class CompiledRowQuery(_Compiled):
    """A SELECT of at most one row, its columns converted as SQLAlchemy converts them."""

    def __init__(self, engine: Engine, statement: Select[*tuple[Any, ...]]) -> None:
        super().__init__(engine, statement, None)
        dialect = engine.dialect
        self._readers: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]

    def one_or_none(self, params: Mapping[str, Any]) -> list[Any] | None:
        """Return the row's values, or None when no row matches."""
        row = self._execute(params)
        if row is None:
            return None
        return [v if read is None else read(v) for read, v in zip(self._readers, row, strict=True)]


_inserts: WeakKeyDictionary[Engine, dict[tuple[Insert, frozenset[str]], CompiledInsert | None]]
_inserts = WeakKeyDictionary()


def compiled_insert(
    engine: Engine, statement: Insert, values: Mapping[str, Any]
) -> CompiledInsert | None:
    """Return the statement compiled for these values' columns, or None when it cannot be
    (then run it through SQLAlchemy)."""
    key = (statement, frozenset(values))
    known = _inserts.setdefault(engine, {})
    if key not in known:
        try:
            known[key] = CompiledInsert(engine, statement, key[1])
        except ValueError:
            known[key] = None
    return known[key]
