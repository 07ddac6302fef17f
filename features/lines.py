"""Order lines as the stores keep them: one row per line of a purchase or cancellation event,
keyed by (event id, line number), times in UTC microseconds (exact in any database).

The purchase archive (`features.archive`), the one store of order lines, keeps them in a table of
this shape (`line_table`), written by `add_lines` (an insert that skips keys already stored: a
redelivered event adds nothing) and read back canonical (`read_lines`,
`xsell.history.LINE_COLUMNS`). A history file's lines get the keys a replay of it gives its
events, so a line imported and later streamed is one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from xsell.chunks import chunked
from xsell.events import EventType, PurchaseEvent, event_id_for
from xsell.history import LINE_COLUMNS

# stored columns of a line after its key, in table order
LINE_FIELDS = (
    "order_id",
    "customer_id",
    "product_id",
    "product_name",
    "category",
    "quantity",
    "unit_price",
    "ordered_at_us",
    "is_return",
    "currency",
    "channel",
    "marketing_consent",
)
LineRow = tuple[object, ...]  # event_id, line_no, then LINE_FIELDS
_INSERT_CHUNK = 5_000


def line_table(metadata: MetaData, name: str) -> Table:
    """A table of order lines named ``name``: key (event id, line number), then `LINE_FIELDS`."""
    return Table(
        name,
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
        Column("ordered_at_us", BigInteger, nullable=False, index=True),
        Column("is_return", Boolean, nullable=False),
        Column("currency", String(8)),
        Column("channel", String(32)),
        Column("marketing_consent", Boolean, nullable=False),
    )


def add_lines(db: Connection, table: Table, rows: Sequence[LineRow]) -> int:
    """Insert line rows, skipping keys already stored (SQLite and PostgreSQL); return how many were new."""
    if not rows:
        return 0
    names = [column.name for column in table.columns]
    if db.dialect.name == "sqlite":
        # the rows as they are to the driver's executemany (SQLAlchemy's per-row parameter
        # processing costs more than SQLite's insert); a skipped key adds nothing to the rowcount
        skip_stored = sqlite.insert(table).on_conflict_do_nothing(index_elements=["event_id", "line_no"])
        statement = str(skip_stored.compile(dialect=db.dialect, column_keys=names))
        return sum(db.exec_driver_sql(statement, list(chunk)).rowcount for chunk in chunked(list(rows), _INSERT_CHUNK))
    insert = (
        postgresql.insert(table)
        .on_conflict_do_nothing(index_elements=["event_id", "line_no"])
        .returning(table.c.event_id)
    )
    added = 0
    for chunk in chunked(list(rows), _INSERT_CHUNK):
        records = [dict(zip(names, row, strict=True)) for row in chunk]
        for record in records:
            record["is_return"] = bool(record["is_return"])
            record["marketing_consent"] = bool(record["marketing_consent"])
        added += len(db.execute(insert, records).all())
    return added


def read_lines(
    db: Connection, table: Table, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """Lines with ``since <= ordered_at < until`` (either bound optional), canonical and sorted by time."""
    query = select(*(table.c[name] for name in LINE_FIELDS))
    if since is not None:
        query = query.where(table.c.ordered_at_us >= micros(since))
    if until is not None:
        query = query.where(table.c.ordered_at_us < micros(until))
    return canonical_lines(db.execute(query).all())


def event_line_rows(events: Iterable[PurchaseEvent]) -> list[LineRow]:
    """Line rows of events: one per line, stamped with the event's time."""
    rows: list[LineRow] = []
    for event in events:
        at = micros(event.occurred_at)
        is_return = int(event.event_type is EventType.ORDER_CANCELLED)
        consent = int(event.marketing_consent)
        for number, line in enumerate(event.lines):
            rows.append(
                (
                    event.event_id,
                    number,
                    event.order_id,
                    event.customer_id,
                    line.product_id,
                    line.name,
                    line.category,
                    line.quantity,
                    line.unit_price,
                    at,
                    is_return,
                    event.currency,
                    event.channel,
                    consent,
                )
            )
    return rows


def frame_line_rows(lines: pd.DataFrame) -> list[LineRow]:
    """Line rows of canonical lines (a history file's): each line keyed by the id of the
    event `events_from_history` makes of it and its position within that event."""
    if lines.empty:
        return []
    is_return = lines["is_return"].astype(bool).to_numpy()
    orders = lines["order_id"].astype(str).to_numpy()
    pairs = pd.Series(list(zip(orders, is_return, strict=True)), index=lines.index)
    ids = {
        pair: event_id_for(pair[0], EventType.ORDER_CANCELLED if pair[1] else EventType.PURCHASE)
        for pair in dict.fromkeys(pairs)
    }
    event_ids = pairs.map(ids).to_numpy(dtype=object)
    line_no = lines.groupby([lines["order_id"], lines["is_return"]], sort=False).cumcount().to_numpy()
    at = pd.to_datetime(lines["ordered_at"], utc=True).dt.as_unit("us").astype("int64").to_numpy()  # any resolution

    def column(name: str) -> list[object]:
        if name not in lines:
            return [None] * len(lines)
        values = lines[name]
        return values.astype(object).where(values.notna(), None).tolist()

    return list(
        zip(
            event_ids,
            line_no.tolist(),
            orders.tolist(),
            column("customer_id"),
            lines["product_id"].astype(str).tolist(),
            column("product_name"),
            column("category"),
            lines["quantity"].astype("int64").tolist(),
            lines["unit_price"].astype("float64").tolist(),
            at.tolist(),
            is_return.astype(int).tolist(),
            column("currency"),
            column("channel"),
            [int(bool(v)) for v in column("marketing_consent")],
            strict=True,
        )
    )


def canonical_lines(rows: Sequence[Sequence[object]]) -> pd.DataFrame:
    """Stored order-line rows (the `LINE_FIELDS` columns, times in UTC microseconds) in the
    canonical shape of `xsell.history.LINE_COLUMNS`: ordered_at tz-aware UTC, sorted by time."""
    frame = pd.DataFrame.from_records(list(rows), columns=list(LINE_FIELDS))
    frame["ordered_at"] = pd.to_datetime(frame.pop("ordered_at_us").astype("int64"), unit="us", utc=True)
    frame = frame.sort_values(["ordered_at", "order_id"], kind="stable", ignore_index=True)
    frame["quantity"] = frame["quantity"].astype("int64")
    frame["unit_price"] = frame["unit_price"].astype("float64")
    frame["is_return"] = frame["is_return"].astype(bool)
    frame["marketing_consent"] = frame["marketing_consent"].astype(bool)
    frame["customer_email"] = None
    for column in ("product_name", "category"):
        frame[column] = frame[column].astype("string")
    return frame[list(LINE_COLUMNS)]


def micros(at: datetime) -> int:
    """UTC microseconds of a time (a naive one is taken as UTC)."""
    return int(pd.Timestamp(at if at.tzinfo else at.replace(tzinfo=UTC)).value // 1000)
