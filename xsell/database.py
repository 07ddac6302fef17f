"""The xsell database: one SQLAlchemy engine factory for every store on `settings.db_url`.

SQLite under XSELL_HOME by default, PostgreSQL (or any SQLAlchemy URL) by `XSELL_DATABASE_URL`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, Insert, MetaData, Select, Table, bindparam, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine, RowMapping, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import ColumnClause

from xsell.chunks import chunked

CREATE_ATTEMPTS = 5


def engine_for(url: str) -> Engine:
    """An engine; for a SQLite file, its folder is created and writers wait for each other's locks."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # no pre-ping: a file has no server to drop the connection, and a ping per checkout is a query
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _write_ahead_log)
    return engine


def _write_ahead_log(connection: sqlite3.Connection, _record: object) -> None:
    """A SQLite connection in write-ahead-log mode, synced at checkpoints: a commit appends to the
    log instead of rewriting pages through a journal with several syncs (the services commit once
    a batch), readers do not wait for the writer, and a process killed mid-write loses nothing it
    committed (a power cut may lose the last commits; the production profile runs PostgreSQL)."""
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_tables(metadata: MetaData, engine: Engine) -> None:
    """Create the tables (and indexes) of ``metadata`` that are missing. Two processes or threads
    opening a new database at once both find a table missing and both create it (``create_all``
    checks, then creates): the one that loses gets "table ... already exists" and tries again, and
    its check then finds the other's table. An error that persists is raised."""
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            metadata.create_all(engine)
            return
        except DBAPIError:
            if attempt == CREATE_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)


def add_missing_columns(table: Table, engine: Engine) -> None:
    """Add the columns of ``table`` that its stored table lacks (one created before they existed;
    they are nullable). Two processes adding one at once: the one that loses tries again and then
    finds it; an error that persists is raised."""
    preparer = engine.dialect.identifier_preparer
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        stored = {column["name"] for column in inspect(engine).get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in stored]
        if not missing:
            return
        try:
            with engine.begin() as db:
                for column in missing:
                    db.exec_driver_sql(
                        f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN "
                        f"{preparer.format_column(column)} {column.type.compile(engine.dialect)}"
                    )
            return
        except DBAPIError:
            if attempt == CREATE_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)


def upsert_insert(db: Connection, table: Table) -> Any:
    """An INSERT into ``table`` that knows ``ON CONFLICT`` (`on_conflict_do_nothing`,
    `on_conflict_do_update`), in the connection's dialect: PostgreSQL's or SQLite's."""
    return (postgresql if db.dialect.name == "postgresql" else sqlite).insert(table)


def execute_many(db: Connection, statement: Insert, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run ``statement`` (an INSERT without RETURNING) once for each of ``rows``, which all give
    the same columns, in as few round trips as the database allows.

    On SQLite the rows go to the driver's ``executemany`` as tuples, each value through its column
    type's bind processor, as SQLAlchemy would send them: SQLAlchemy's own handling of each row's
    parameters costs more than SQLite's insert of it (about 10 against 5 µs a row of six columns).
    On PostgreSQL the statement returns its table's first column, which lets SQLAlchemy send the
    rows as multi-row VALUES ("insertmanyvalues"): without RETURNING it does so for a plain INSERT
    but sends an ``ON CONFLICT`` one row by row, a round trip and a statement each (ten times
    slower on 10,000 rows). SQLAlchemy runs any other statement, and a statement with values of
    its own (not the rows'), as it is."""
    if not rows:
        return
    if db.dialect.name == "postgresql":
        db.execute(statement.returning(next(iter(statement.table.columns))), rows).close()
        return
    if db.dialect.name != "sqlite":
        db.execute(statement, rows)
        return
    compiled = statement.compile(dialect=db.dialect, column_keys=list(rows[0]))
    names = compiled.positiontup or []
    if any(name not in rows[0] for name in names):  # a value of its own in the statement (``set_``)
        db.execute(statement, rows)
        return
    columns = {column.key: column for column in statement.table.columns}
    getters = [(name, _bind_processor(columns[name], db.dialect)) for name in names]
    db.exec_driver_sql(
        str(compiled),
        [
            tuple(row[name] if processor is None else processor(row[name]) for name, processor in getters)
            for row in rows
        ],
    )


def _bind_processor(column: ColumnClause[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The function SQLAlchemy passes ``column``'s values through for ``dialect`` (None: as they
    are). A time's is remembered per value: the rows of one batch share a few times (an order's
    lines its time, a decision's offers theirs), and formatting one costs more than a look-up."""
    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    if processor is None or not isinstance(column.type, DateTime):
        return processor
    done: dict[tuple[Any, Any], Any] = {}

    def remembered(value: Any) -> Any:
        key = (value, getattr(value, "tzinfo", None))  # one instant in two zones: equal, yet written apart
        if key not in done:
            done[key] = processor(value)
        return done[key]

    return remembered


def hold_rows(db: Connection, table: Table, keys: Sequence[str]) -> None:
    """Hold the rows of ``keys`` in a lock table (its key, then a ``touched_at`` time) until the
    transaction ends: an upsert, so a row lock in PostgreSQL and the database's write lock in
    SQLite. Callers pass the keys sorted, so that two transactions never wait on each other in a
    circle; one statement of many rows (`execute_many`) takes them in that order, each key once."""
    if not keys:
        return
    (key,) = table.primary_key.columns
    insert = upsert_insert(db, table)
    statement = insert.on_conflict_do_update(index_elements=[key], set_={"touched_at": insert.excluded.touched_at})
    now = time.time()
    execute_many(db, statement, [{key.name: value, "touched_at": now} for value in dict.fromkeys(keys)])


class SelectIn:
    """``query`` narrowed to the rows whose ``column`` is one of the values given at each run: one
    statement with an expanding parameter, built once, where a new ``IN (...)`` clause per call
    (built, then keyed for the compiled cache) costs more than a small query's own work. Services
    keep one per query they run on every batch."""

    def __init__(self, query: Select[Any], column: Column[Any]) -> None:
        self.statement = query.where(column.in_(bindparam("values", expanding=True)))

    def rows(self, db: Connection, values: Iterable[object]) -> Iterator[RowMapping]:
        """The rows for ``values``: one query per chunk of the distinct values (``xsell.chunks``),
        in sorted order."""
        for chunk in chunked(sorted(set(values), key=str)):
            yield from db.execute(self.statement, {"values": list(chunk)}).mappings()


def select_in(
    db: Connection, query: Select[Any], column: Column[Any], values: Iterable[object]
) -> Iterator[RowMapping]:
    """The rows of ``query`` whose ``column`` is one of ``values`` (a `SelectIn` used once)."""
    return SelectIn(query, column).rows(db, values)
