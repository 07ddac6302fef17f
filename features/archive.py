"""The purchase archive: every valid purchase and cancellation that reached `purchases`, as
canonical order lines, each line exactly once. It is the training source (`xsell train` without
`--data`, `xsell retrain`); `xsell import --data FILE` loads a historical export into it.

A table, `purchase_archive`, in the configured database (`settings.db_url`: SQLite under
XSELL_HOME by default, PostgreSQL in the production profile) rather than Parquet files: a line's
key is (event id, line number), and an insert that ignores a key it already has makes the archive
exactly-once under redelivery, kill -9 and a broker restart with no bookkeeping of files or
offsets; every instance writes to the same shared store; and a training window is one indexed
range query on the line's time. Lines are keyed as everywhere (`features.lines`), so an export
imported first and later replayed through Kafka lands once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
from sqlalchemy import MetaData, func, select
from sqlalchemy.engine import Engine

from features.lines import LineRow, add_lines, event_line_rows, frame_line_rows, line_table, read_lines
from xsell.database import create_tables, engine_for
from xsell.events import PurchaseEvent

metadata = MetaData()
purchase_archive = line_table(metadata, "purchase_archive")


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

    def _add(self, rows: list[LineRow]) -> int:
        with self.engine.begin() as db:
            return add_lines(db, purchase_archive, rows)

    def lines(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """Archived lines with ``since <= ordered_at < until`` (either bound optional), canonical
        (`xsell.history.LINE_COLUMNS`), sorted by time; returns have positive quantities and
        ``is_return`` set, as every reader of history gives them."""
        with self.engine.connect() as db:
            return read_lines(db, purchase_archive, since, until)

    def span(self) -> tuple[datetime | None, datetime | None, int]:
        """(oldest line's time, newest line's time, number of lines); times None when empty."""
        column = purchase_archive.c.ordered_at_us
        with self.engine.connect() as db:
            oldest, newest, count = db.execute(select(func.min(column), func.max(column), func.count())).one()
        return _from_micros(oldest), _from_micros(newest), int(count)


def _from_micros(value: int | None) -> datetime | None:
    return None if value is None else pd.Timestamp(int(value), unit="us", tz="UTC").to_pydatetime()
