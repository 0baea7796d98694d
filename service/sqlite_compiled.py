"""Statements on SQLite's hot paths, compiled once and run straight on the driver.

Every request looks its token up, every read of patient data commits an access-log row
before it answers, and every stored instance runs a short write transaction. Through a
SQLAlchemy connection or session each statement cost a BEGIN, its execution context and a
COMMIT or ROLLBACK: several times the statement's own time. Here it is the same SQL,
compiled once per statement (and set of columns), each value converted by the bind and
result processors SQLAlchemy itself would apply, run on the driver's connection: alone, in
the driver's autocommit mode (the engine's connections have no implicit transactions: see
``db._sqlite_pragmas``), which is its own transaction; or in a ``DriverTransaction``.

A database error is raised as SQLAlchemy's ``DBAPIError``, as SQLAlchemy would raise it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Dialect, Engine, Insert, Select
from sqlalchemy.exc import DBAPIError

_Statement = Insert | Select[*tuple[Any, ...]]


class _Compiled:
    """A statement compiled for SQLite, with its values' bind processors."""

    def __init__(
        self, dialect: Dialect, statement: _Statement, columns: frozenset[str] | None
    ) -> None:
        keys = sorted(columns) if columns is not None else None
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        if dialect.paramstyle != "qmark" or compiled.positiontup is None:
            raise ValueError(f"no compiled statement for {dialect.name}")
        computed = ("insert_prefetch", "postfetch", "returning")  # an INSERT's, when there
        if any(getattr(compiled, name, None) for name in computed):
            # Defaults computed in Python, or values read back: SQLAlchemy's own path does those.
            raise ValueError("this statement needs values the database path computes")
        self._error: type[Exception] = dialect.loaded_dbapi.Error
        self._sql = str(compiled)
        self._order = list(compiled.positiontup)
        self._binders: list[Callable[[Any], Any] | None] = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._order
        ]
        # Values the statement holds itself (``column != ""``): bound unless the call names them.
        self._own_values = {
            name: compiled.binds[name].effective_value
            for name in self._order
            if not compiled.binds[name].required
        }
        # A list of values bound as one parameter (``bindparam(..., expanding=True)``, an IN
        # list) becomes one placeholder per value, as SQLAlchemy expands it at execution.
        self._expanded = compiled if compiled.post_compile_params else None

    def _execute(
        self, connection: Any, values: Mapping[str, Any], *, every_row: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run the statement on a driver connection; return its first row (in a list, empty
        when there is none), or with ``every_row`` all its rows."""
        sql, params = self._sql_and_params(values)
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, params)
                if every_row:
                    return cursor.fetchall()  # type: ignore[no-any-return]
                row = cursor.fetchone()
                return [] if row is None else [row]
            finally:
                cursor.close()
        except self._error as exc:
            raise DBAPIError.instance(sql, params, exc, self._error) from exc

    def _sql_and_params(self, values: Mapping[str, Any]) -> tuple[str, list[Any]]:
        if self._expanded is None:
            if self._own_values:
                values = self._own_values | dict(values)
            return self._sql, [
                value if bind is None else bind(value)
                for bind, value in zip(self._binders, (values[n] for n in self._order), strict=True)
            ]
        state = self._expanded.construct_expanded_state(dict(values))
        processors = state.processors
        params = []
        for name in state.positiontup or ():
            value, bind = state.parameters[name], processors.get(name)
            params.append(value if bind is None else bind(value))
        return state.statement, params


class CompiledInsert(_Compiled):
    """An INSERT of one row with a fixed set of columns."""

    def __init__(self, dialect: Dialect, statement: Insert, columns: frozenset[str]) -> None:
        super().__init__(dialect, statement, columns)

    def run(self, connection: Any, values: Mapping[str, Any]) -> None:
        """Insert the row (column name → value) on a driver connection."""
        self._execute(connection, values)


class CompiledRowQuery(_Compiled):
    """A SELECT, its columns converted as SQLAlchemy converts them; a parameter bound with
    ``expanding=True`` takes a list of values."""

    def __init__(self, dialect: Dialect, statement: Select[*tuple[Any, ...]]) -> None:
        super().__init__(dialect, statement, None)
        self._readers: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]

    def one_or_none(self, connection: Any, params: Mapping[str, Any]) -> list[Any] | None:
        """Return the first row's values, or None when no row matches."""
        rows = self._execute(connection, params)
        return self._converted(rows[0]) if rows else None

    def all(self, connection: Any, params: Mapping[str, Any]) -> list[list[Any]]:
        """Return every row's values."""
        return [self._converted(row) for row in self._execute(connection, params, every_row=True)]

    def _converted(self, row: tuple[Any, ...]) -> list[Any]:
        return [v if read is None else read(v) for read, v in zip(self._readers, row, strict=True)]


@contextmanager
def driver_connection(engine: Engine) -> Iterator[Any]:
    """Yield a driver connection from the engine's pool (in autocommit: see above)."""
    connection = engine.raw_connection()
    try:
        yield connection.dbapi_connection
    finally:
        connection.close()  # back to the pool


class DriverTransaction:
    """A write transaction on a driver connection: what ``driver_transaction`` yields."""

    def __init__(self, engine: Engine, connection: Any) -> None:
        self._engine = engine
        self._connection = connection

    def execute(self, statement: Insert, params: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (column name → value), as ``Session.execute`` would."""
        for values in params:
            compiled = compiled_insert(self._engine, statement, values)
            if compiled is None:
                raise ValueError("this INSERT needs values the database path computes")
            compiled.run(self._connection, values)

    def one_or_none(
        self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> list[Any] | None:
        """Return the values of the one row a query finds, or None."""
        return compiled_query(self._engine, statement).one_or_none(self._connection, params)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block inside the transaction that, if it raises, is undone alone."""
        error: type[Exception] = self._engine.dialect.loaded_dbapi.Error
        _run(self._connection, "SAVEPOINT vigil_part", error)
        try:
            yield
        except BaseException:
            _run(self._connection, "ROLLBACK TO vigil_part", error)
            _run(self._connection, "RELEASE vigil_part", error)
            raise
        _run(self._connection, "RELEASE vigil_part", error)


@contextmanager
def driver_transaction(engine: Engine) -> Iterator[DriverTransaction]:
    """Yield a transaction holding SQLite's write lock (BEGIN IMMEDIATE) on a driver
    connection; commit when the block succeeds, roll back if not.

    The caller takes its turn with the other writers first (``db.sqlite_driver_transaction``).
    """
    error: type[Exception] = engine.dialect.loaded_dbapi.Error
    with driver_connection(engine) as connection:
        _run(connection, "BEGIN IMMEDIATE", error)
        try:
            yield DriverTransaction(engine, connection)
            _run(connection, "COMMIT", error)
        except BaseException:
            if connection.in_transaction:
                _run(connection, "ROLLBACK", error)
            raise


def _run(connection: Any, sql: str, error: type[Exception]) -> None:
    try:
        connection.execute(sql)
    except error as exc:
        raise DBAPIError.instance(sql, [], exc, error) from exc


# Compiled once per engine (the dialect's settings shape the SQL). The cached statements
# keep no reference to their engine, so an engine that is dropped leaves with its entry.
_inserts: WeakKeyDictionary[Engine, dict[tuple[Insert, frozenset[str]], CompiledInsert | None]]
_inserts = WeakKeyDictionary()
_queries: WeakKeyDictionary[Engine, dict[Select[*tuple[Any, ...]], CompiledRowQuery]]
_queries = WeakKeyDictionary()


def compiled_insert(
    engine: Engine, statement: Insert, values: Mapping[str, Any]
) -> CompiledInsert | None:
    """Return the statement compiled for these values' columns, or None when it cannot be
    (then run it through SQLAlchemy)."""
    key = (statement, frozenset(values))
    known = _inserts.setdefault(engine, {})
    if key not in known:
        try:
            known[key] = CompiledInsert(engine.dialect, statement, key[1])
        except ValueError:
            known[key] = None
    return known[key]


# Queries compiled per engine at most: QIDO builds one statement per shape of search, and
# the shapes a client can ask for are many. The oldest compiled goes first.
MAX_COMPILED_QUERIES = 1024


def compiled_query(engine: Engine, statement: Select[*tuple[Any, ...]]) -> CompiledRowQuery:
    """Return a query compiled for the engine (a query built once, not per call)."""
    known = _queries.setdefault(engine, {})
    query = known.get(statement)
    if query is None:
        if len(known) >= MAX_COMPILED_QUERIES:
            del known[next(iter(known))]
        query = known[statement] = CompiledRowQuery(engine.dialect, statement)
    return query
