"""The purchase archive: every valid purchase and cancellation that reached `purchases`, as
canonical order lines, each line exactly once. It is the training source (`xsell train` without
`--data`, `xsell retrain`); `xsell import --data FILE` loads a historical export into it.

A table, `purchase_archive`, in the configured database (`settings.db_url`: SQLite under
XSELL_HOME by default, PostgreSQL in the production profile) rather than Parquet files: a line's
key is (event id, line number), and an insert that ignores a key it already has makes the archive
exactly-once under redelivery, kill -9 and a broker restart with no bookkeeping of files or
offsets; every instance writes to the same shared store; and a training window is one indexed
range query on `ordered_at`. Lines are keyed like the fold state's (`features.state`), so an
export imported first and later replayed through Kafka lands once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Executable

from features.state import LineRow, canonical_lines, event_line_rows, frame_line_rows
from xsell.chunks import chunked
from xsell.database import create_tables, engine_for
from xsell.events import PurchaseEvent

metadata = MetaData()
purchase_archive = Table(
    "purchase_archive",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128)),
    Column("product_id", String(128), nullable=False),
    Column("product_name", String(512)),
    Column("category", String(256)),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Float, nullable=False),
    Column("ordered_at_us", BigInteger, nullable=False, index=True),  # UTC microseconds: exact, any database
    Column("is_return", Boolean, nullable=False),
    Column("currency", String(8)),
    Column("channel", String(32)),
    Column("marketing_consent", Boolean, nullable=False),
)
_COLUMNS = [column.name for column in purchase_archive.columns]
_INSERT_CHUNK = 5_000


class PurchaseArchive:
    """Append-only order lines in the configured database; writes ignore lines already archived."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = engine_for(url)
        create_tables(metadata, self.engine)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def add_events(self, events: Iterable[PurchaseEvent]) -> int:
        """Archive the lines of valid events (a purchase or a cancellation each); return how many
        lines were new (an event archived before adds none)."""
        return self._add(event_line_rows(events))

    def add_lines(self, lines: pd.DataFrame) -> int:
        """Archive canonical lines (`xsell.history`), keyed by the events a replay of them makes;
        return how many were new."""
        return self._add(frame_line_rows(lines))

    def _add(self, rows: Sequence[LineRow]) -> int:
        if not rows:
            return 0
        added = 0
        with self.engine.begin() as db:
            insert = _insert_ignoring_known(db)
            for chunk in chunked(list(rows), _INSERT_CHUNK):
                added += len(db.execute(insert, [_record(row) for row in chunk]).all())
        return added

    def lines(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """Archived lines with ``since <= ordered_at < until`` (either bound optional), canonical
        (`xsell.history.LINE_COLUMNS`), sorted by time; returns have positive quantities and
        ``is_return`` set, as every reader of history gives them."""
        query = select(*(purchase_archive.c[name] for name in _COLUMNS if name not in ("event_id", "line_no")))
        if since is not None:
            query = query.where(purchase_archive.c.ordered_at_us >= _micros(since))
        if until is not None:
            query = query.where(purchase_archive.c.ordered_at_us < _micros(until))
        with self.engine.connect() as db:
            return canonical_lines(db.execute(query).tuples().all())

    def span(self) -> tuple[datetime | None, datetime | None, int]:
        """(oldest line's time, newest line's time, number of lines); times None when empty."""
        column = purchase_archive.c.ordered_at_us
        with self.engine.connect() as db:
            oldest, newest, count = db.execute(select(func.min(column), func.max(column), func.count())).one()
        return _from_micros(oldest), _from_micros(newest), int(count)


def _insert_ignoring_known(db: Connection) -> Executable:
    """An INSERT that skips rows whose key is already stored and returns the keys it wrote
    (SQLite and PostgreSQL)."""
    dialect = postgresql if db.dialect.name == "postgresql" else sqlite
    return (
        dialect.insert(purchase_archive)
        .on_conflict_do_nothing(index_elements=["event_id", "line_no"])
        .returning(purchase_archive.c.event_id)
    )


def _record(row: LineRow) -> dict[str, object]:
    record = dict(zip(_COLUMNS, row, strict=True))
    record["is_return"] = bool(record["is_return"])
    record["marketing_consent"] = bool(record["marketing_consent"])
    return record


def _micros(at: datetime) -> int:
    return int(pd.Timestamp(at if at.tzinfo else at.replace(tzinfo=UTC)).value // 1000)


def _from_micros(value: int | None) -> datetime | None:
    return None if value is None else pd.Timestamp(int(value), unit="us", tz="UTC").to_pydatetime()
