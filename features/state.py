"""Durable state of the feature fold: per-entity running totals, the ids of applied events and
the order lines of those events.

Stored in SQLite under XSELL_HOME (`feast/fold_state.db`). The streaming pipeline saves a batch's
touched entities together with the batch's event ids and order lines in one transaction, before it
pushes to Feast and commits Kafka offsets. After a crash anywhere in between, re-delivered events
are found in `applied_events` and change nothing: no double counting, no line kept twice.

The order lines (`order_lines`, canonical columns of `xsell.history.LINE_COLUMNS`, keyed by event
id and line number) are what the candidate index is rebuilt from between retrains
(`xsell index refresh`). Backfill stores the history's lines, the pipeline each applied event's.
No e-mail address is kept: `customer_email` reads back empty.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from features.aggregates import CustomerState, FeatureFold, ProductState
from features.owned import PurchaseTimes, bought_before, most_recent_first
from xsell.chunks import chunked, placeholders
from xsell.events import EventType, PurchaseEvent, event_id_for
from xsell.history import LINE_COLUMNS

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (customer_id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (product_id TEXT PRIMARY KEY, state TEXT NOT NULL, percentile REAL);
CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS categories (product_id TEXT PRIMARY KEY, category TEXT);
CREATE TABLE IF NOT EXISTS order_lines (
    event_id TEXT NOT NULL, line_no INTEGER NOT NULL, order_id TEXT NOT NULL, customer_id TEXT,
    product_id TEXT NOT NULL, product_name TEXT, category TEXT, quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL, ordered_at_us INTEGER NOT NULL, is_return INTEGER NOT NULL,
    currency TEXT, channel TEXT, marketing_consent INTEGER NOT NULL,
    UNIQUE (event_id, line_no)
);
"""
# stored columns of `order_lines` after the key, in table order
_LINE_FIELDS = (
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
_INSERT_LINES = f"INSERT OR IGNORE INTO order_lines VALUES ({', '.join('?' * (len(_LINE_FIELDS) + 2))})"  # noqa: S608  (placeholders only)
LineRow = tuple[object, ...]


def event_line_rows(events: Iterable[PurchaseEvent]) -> list[LineRow]:
    """`order_lines` rows of events: one per line, stamped with the event's time."""
    rows: list[LineRow] = []
    for event in events:
        at = _micros(event.occurred_at)
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
    """`order_lines` rows of canonical lines (a history file's): each line keyed by the id of the
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
    """Stored order-line rows (the `_LINE_FIELDS` columns, times in UTC microseconds) in the
    canonical shape of `xsell.history.LINE_COLUMNS`: ordered_at tz-aware UTC, sorted by time."""
    frame = pd.DataFrame.from_records(list(rows), columns=list(_LINE_FIELDS))
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


def _micros(at: datetime) -> int:
    return int(pd.Timestamp(at).value // 1000)


class FoldStateStore:
    """Load and save a `FeatureFold` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._reader: sqlite3.Connection | None = None  # kept open for the offer service's frequent reads
        with self._connect() as db:
            db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the kept read connection (writes open their own)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def load(self) -> FeatureFold:
        """The fold as last saved (empty if nothing was saved)."""
        with self._connect() as db:
            categories = dict(db.execute("SELECT product_id, category FROM categories"))
            customers = {c: CustomerState.from_json(json.loads(s)) for c, s in db.execute("SELECT * FROM customers")}
            products, percentiles = {}, {}
            for product_id, state, percentile in db.execute("SELECT product_id, state, percentile FROM products"):
                products[product_id] = ProductState.from_json(json.loads(state))
                if percentile is not None:
                    percentiles[product_id] = percentile
            applied = {row[0] for row in db.execute("SELECT event_id FROM applied_events")}
        fold = FeatureFold(categories)
        fold.restore(customers, products, applied, percentiles)
        return fold

    def owned_products(
        self, customer_ids: Iterable[str], as_of: Mapping[str, datetime] | None = None
    ) -> dict[str, tuple[str, ...]]:
        """Products each customer bought before `as_of[customer]` (all so far without it), most
        recently bought first (the order training's trigger history has), for "never offer what
        is owned" and for candidate seeds at serving time.

        The time bound matters when the feature pipeline is ahead of the caller (a fast replay):
        later purchases must not count as owned (`features.owned.bought_before`)."""
        times = self.purchase_times(customer_ids)
        owned: dict[str, tuple[str, ...]] = dict.fromkeys(set(customer_ids), ())
        for customer_id, known in times.items():
            limit = as_of[customer_id].timestamp() if as_of and customer_id in as_of else float("inf")
            owned[customer_id] = most_recent_first(bought_before(known, limit))
        return owned

    def purchase_times(self, customer_ids: Iterable[str]) -> dict[str, PurchaseTimes]:
        """Per known customer, when each product was first and last bought (epoch seconds)."""
        ids = list(set(customer_ids))
        times: dict[str, PurchaseTimes] = {}
        if self._reader is None:
            self._reader = self._connect()
        db = self._reader  # outside a transaction: every SELECT sees the latest commit
        for chunk in chunked(ids):
            query = f"SELECT customer_id, state FROM customers WHERE customer_id IN ({placeholders(chunk)})"  # noqa: S608  (placeholders only)
            for customer_id, state in db.execute(query, chunk):
                data = json.loads(state)
                products = data["products"]
                first = products if isinstance(products, dict) else dict.fromkeys(products, 0.0)
                times[customer_id] = (first, data.get("last_bought", {}))
        return times

    def save(
        self,
        fold: FeatureFold,
        customers: Iterable[str],
        products: Iterable[str],
        applied: Iterable[str],
        events: Iterable[PurchaseEvent] = (),
    ) -> None:
        """Save the given entities, event ids and the order lines of `events` (the newly applied
        ones) in one transaction. Lines of an event already stored are not stored again."""
        with self._connect() as db:
            self._write(db, fold, customers, products, applied, event_line_rows(events))

    def replace_all(self, fold: FeatureFold, lines: pd.DataFrame | None = None) -> None:
        """Replace everything with `fold` and the order lines it was folded from (backfill), in
        one transaction."""
        rows = frame_line_rows(lines) if lines is not None else []
        with self._connect() as db:
            db.execute("BEGIN")
            for table in ("customers", "products", "applied_events", "categories", "order_lines"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608  (fixed table names)
            db.executemany("INSERT INTO categories VALUES (?, ?)", list(fold.categories.items()))
            self._write(db, fold, fold.customers, fold.products, fold.applied, rows)

    @staticmethod
    def _write(
        db: sqlite3.Connection,
        fold: FeatureFold,
        customers: Iterable[str],
        products: Iterable[str],
        applied: Iterable[str],
        line_rows: list[LineRow],
    ) -> None:
        percentiles = fold.percentiles()
        db.executemany(
            "INSERT OR REPLACE INTO customers VALUES (?, ?)",
            [(c, json.dumps(fold.customers[c].to_json())) for c in customers],
        )
        db.executemany(
            "INSERT OR REPLACE INTO products VALUES (?, ?, ?)",
            [(p, json.dumps(fold.products[p].to_json()), percentiles.get(p)) for p in products],
        )
        db.executemany("INSERT OR IGNORE INTO applied_events VALUES (?)", [(e,) for e in applied])
        db.executemany(_INSERT_LINES, line_rows)

    def order_lines(self, since: datetime | None = None) -> pd.DataFrame:
        """The stored order lines (at or after `since`), in the canonical shape of
        `xsell.history.LINE_COLUMNS`: ordered_at tz-aware UTC, sorted by time."""
        query = f"SELECT {', '.join(_LINE_FIELDS)} FROM order_lines"  # noqa: S608  (fixed columns)
        params: tuple[object, ...] = ()
        if since is not None:
            query += " WHERE ordered_at_us >= ?"
            params = (_micros(since if since.tzinfo else since.astimezone()),)
        with self._connect() as db:  # stored in arrival order; sorted here, faster than ORDER BY in SQLite
            rows = db.execute(query, params).fetchall()
        return canonical_lines(rows)

    def line_coverage(self) -> tuple[int, int]:
        """(events applied, events whose order lines are stored): equal unless the state was
        written before order lines were kept."""
        with self._connect() as db:
            applied = db.execute("SELECT COUNT(*) FROM applied_events").fetchone()[0]
            with_lines = db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT event_id FROM order_lines)").fetchone()[0]
        return int(applied), int(with_lines)

    def save_categories(self, categories: dict[str, str | None]) -> None:
        """Store the product catalog's categories (reference data for the streaming fold)."""
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO categories VALUES (?, ?)", list(categories.items()))
