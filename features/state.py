"""Durable state of the feature fold: per-entity running totals and the ids of applied events.

Stored in SQLite under XSELL_HOME (`feast/fold_state.db`). The streaming pipeline saves a batch's
touched entities together with the batch's event ids in one transaction, before it pushes to
Feast and commits Kafka offsets. After a crash anywhere in between, re-delivered events are found
in `applied_events` and change nothing: no double counting.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from features.aggregates import CustomerState, FeatureFold, ProductState

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (customer_id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (product_id TEXT PRIMARY KEY, state TEXT NOT NULL, percentile REAL);
CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS categories (product_id TEXT PRIMARY KEY, category TEXT);
"""


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
        later purchases must not count as owned. A product bought again after `as_of` is placed
        by its first purchase (the state keeps first and last purchase times only)."""
        ids = list(set(customer_ids))
        owned: dict[str, tuple[str, ...]] = {c: () for c in ids}
        if self._reader is None:
            self._reader = self._connect()
        db = self._reader  # outside a transaction: every SELECT sees the latest commit
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for customer_id, state in db.execute(f"SELECT customer_id, state FROM customers WHERE customer_id IN ({marks})", chunk):
                data = json.loads(state)
                products = data["products"]
                first = products if isinstance(products, dict) else dict.fromkeys(products, 0.0)
                last = data.get("last_bought", {})
                limit = as_of[customer_id].timestamp() if as_of and customer_id in as_of else float("inf")
                latest = {p: last[p] if last.get(p, limit) < limit else t for p, t in first.items() if t < limit}
                owned[customer_id] = tuple(p for _, p in sorted((-t, p) for p, t in latest.items()))
        return owned

    def save(self, fold: FeatureFold, customers: Iterable[str], products: Iterable[str], applied: Iterable[str]) -> None:
        """Save the given entities and event ids in one transaction."""
        percentiles = fold.percentiles()
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO customers VALUES (?, ?)",
                [(c, json.dumps(fold.customers[c].to_json())) for c in customers],
            )
            db.executemany(
                "INSERT OR REPLACE INTO products VALUES (?, ?, ?)",
                [(p, json.dumps(fold.products[p].to_json()), percentiles.get(p)) for p in products],
            )
            db.executemany("INSERT OR IGNORE INTO applied_events VALUES (?)", [(e,) for e in applied])

    def replace_all(self, fold: FeatureFold) -> None:
        """Replace everything with `fold` (backfill)."""
        with self._connect() as db:
            db.executescript("DELETE FROM customers; DELETE FROM products; DELETE FROM applied_events; DELETE FROM categories;")
            db.executemany("INSERT INTO categories VALUES (?, ?)", list(fold.categories.items()))
        self.save(fold, fold.customers, fold.products, fold.applied)

    def save_categories(self, categories: dict[str, str | None]) -> None:
        """Store the product catalog's categories (reference data for the streaming fold)."""
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO categories VALUES (?, ?)", list(categories.items()))
