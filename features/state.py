"""Durable state of the feature fold: per-entity running totals and the ids of applied events.

Tables in the fold state's database (`settings.fold_state_db_url`: SQLite under XSELL_HOME by
default, the configured PostgreSQL database in the production profile, shared by every feature
pipeline instance). Entity states are JSON documents keyed by id, read and written per batch for
the entities it touches: rows of a relational table, not a key-value cache, because a batch's
states and its event ids must change in one transaction. The streaming pipeline
does that before it pushes to Feast and commits Kafka offsets. After a crash anywhere in between,
re-delivered events are found in `fold_applied_events` and change nothing: no double counting.

Several pipeline instances share the state (`FoldBatch`): a batch first holds the rows of the
customers and products it touches and of their categories (row locks in PostgreSQL, the write
lock in SQLite; always in that order, each sorted, so two batches never wait on each other in a
circle), reloads them, the event ids it carries that another instance applied, and the
states of the other products of its categories that moved on (a version number per product
says so; price percentiles compare them all), folds, and writes back; percentiles it moves for
products it holds no row of go to their own table. The statement that holds a customer or product
row reads it back; a held product whose version is the one this process holds is not parsed
again.

The order lines of the purchases live in the purchase archive (`features.archive`), the one place
they are kept: training, `xsell index refresh` and `xsell audit` read them there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Float, MetaData, String, Table, Text, delete, select
from sqlalchemy.engine import Connection, Engine

from features.aggregates import CustomerState, FeatureFold, ProductState
from features.owned import PurchaseTimes, bought_before, most_recent_first
from xsell.database import SelectIn, create_tables, engine_for, execute_many, hold_rows, upsert_insert
from xsell.events import PurchaseEvent

metadata = MetaData()
fold_customers = Table(
    "fold_customers",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("state", Text, nullable=False),
)
fold_products = Table(
    "fold_products",
    metadata,
    Column("product_id", String(128), primary_key=True),
    Column("state", Text, nullable=False),
    Column("category", String(256), index=True),
    Column("version", BigInteger, nullable=False),  # one more at each write: a stale copy is seen at once
)
fold_percentiles = Table(  # apart from the states: a batch rewrites percentiles of products it holds no lock on
    "fold_percentiles",
    metadata,
    Column("product_id", String(128), primary_key=True),
    Column("percentile", Float, nullable=False),
)
fold_applied = Table("fold_applied_events", metadata, Column("event_id", String(128), primary_key=True))
fold_categories = Table(
    "fold_categories",
    metadata,
    Column("product_id", String(128), primary_key=True),
    Column("category", String(256)),
)
fold_category_locks = Table(
    "fold_category_locks",  # held while a batch computes its categories' price percentiles
    metadata,
    Column("category", String(256), primary_key=True),
    Column("touched_at", Float, nullable=False),
)
EMPTY_STATE = "{}"  # a lock row's state until its batch writes the real one: the entity's defaults
_CUSTOMER_STATES = SelectIn(select(fold_customers), fold_customers.c.customer_id)
_PRODUCT_STATES = SelectIn(select(fold_products), fold_products.c.product_id)
_APPLIED = SelectIn(select(fold_applied.c.event_id), fold_applied.c.event_id)


class FoldStateStore:
    """Load and save a `FeatureFold` in the fold state's database."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = engine_for(url)
        create_tables(metadata, self.engine)
        self.versions: dict[str, int] = {}  # product id -> version of the state this process last loaded or wrote

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def load(self) -> FeatureFold:
        """The fold as last saved (empty if nothing was saved); the product versions known are
        this fold's from now on."""
        self.versions.clear()
        with self.engine.connect() as db:
            categories = dict(db.execute(select(fold_categories.c.product_id, fold_categories.c.category)).all())
            customers = {c: _customer(s) for c, s in db.execute(select(fold_customers)) if s != EMPTY_STATE}
            products = {}
            for product_id, state, version in db.execute(
                select(fold_products.c.product_id, fold_products.c.state, fold_products.c.version)
            ):
                if state != EMPTY_STATE:
                    products[product_id] = _product(state)
                    self.versions[product_id] = version
            percentiles = dict(db.execute(select(fold_percentiles.c.product_id, fold_percentiles.c.percentile)).all())
            applied = set(db.execute(select(fold_applied.c.event_id)).scalars())
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
        times: dict[str, PurchaseTimes] = {}
        with self.engine.connect() as db:
            for row in _CUSTOMER_STATES.rows(db, customer_ids):
                data = orjson.loads(row["state"])
                products = data.get("products", {})
                first = products if isinstance(products, dict) else dict.fromkeys(products, 0.0)
                times[row["customer_id"]] = (first, data.get("last_bought", {}))
        return times

    @contextmanager
    def batch(self) -> Iterator[FoldBatch]:
        """One transaction for a batch of the streaming pipeline (see `FoldBatch`)."""
        with self.engine.begin() as db:
            yield FoldBatch(db, self.versions)

    def save(
        self,
        fold: FeatureFold,
        customers: Iterable[str],
        products: Iterable[str],
        applied: Iterable[str],
    ) -> None:
        """Save the given entities and event ids in one transaction."""
        products = list(products)
        with self.batch() as batch:
            batch.save(fold, customers, products, products, applied)

    def replace_all(self, fold: FeatureFold) -> None:
        """Replace everything with `fold` (backfill), in one transaction."""
        with self.engine.begin() as db:
            for table in (fold_customers, fold_products, fold_percentiles, fold_applied, fold_categories):
                db.execute(delete(table))
            _insert(db, fold_categories, [{"product_id": p, "category": c} for p, c in fold.categories.items()])
            self.versions.clear()
            _write(db, fold, self.versions, fold.customers, fold.products, fold.products, fold.applied)

    def save_categories(self, categories: dict[str, str | None]) -> None:
        """Store the product catalog's categories (reference data for the streaming fold)."""
        with self.engine.begin() as db:
            _upsert(db, fold_categories, [{"product_id": p, "category": c} for p, c in categories.items()])


class FoldBatch:
    """A streaming batch's transaction: `refresh` the fold from the shared state for the batch's
    events (their entities held until the end), fold, then `save`."""

    def __init__(self, db: Connection, versions: dict[str, int]) -> None:
        self.db = db
        self.versions = versions

    def refresh(self, fold: FeatureFold, events: Sequence[PurchaseEvent]) -> None:
        """Hold the rows of the customers and products ``events`` touch, and of their categories,
        and reload into ``fold`` what another instance changed: those entities, the event ids it
        applied, the other products of those categories whose state moved on (price percentiles
        compare them all) and the categories' percentiles."""
        db = self.db
        customers = sorted({e.customer_id for e in events if e.customer_id})
        products = sorted({line.product_id for e in events for line in e.lines})
        # sorted: instances take shared rows in one order
        fresh_customers = {
            customer_id: None if state == EMPTY_STATE else _customer(state)
            for customer_id, state in _hold(db, fold_customers, customers)
        }
        fresh_products: dict[str, ProductState | None] = {}
        for product_id, state, version in _hold(db, fold_products, products, {"version": 0}, fold_products.c.version):
            if state == EMPTY_STATE:
                fresh_products[product_id] = None
            elif product_id not in fold.products or self.versions.get(product_id) != version:
                fresh_products[product_id] = _product(state)  # else the fold holds this very state
            self.versions[product_id] = version
        applied = {r["event_id"] for r in _APPLIED.rows(db, (e.event_id for e in events))}
        categories = sorted(
            {s.category for p in products if (s := fresh_products.get(p, fold.products.get(p))) and s.category}
            | {c for p in products if (c := fold.categories.get(p))}
        )
        percentiles: dict[str, float] = {}
        if categories:  # every writer of a category's products holds its row: what follows is settled
            hold_rows(db, fold_category_locks, categories)
            query = (
                select(fold_products.c.product_id, fold_products.c.version, fold_percentiles.c.percentile)
                .outerjoin(fold_percentiles, fold_percentiles.c.product_id == fold_products.c.product_id)
                .where(fold_products.c.category.in_(categories))
            )
            members = db.execute(query).all()
            percentiles = {p: percentile for p, _, percentile in members if percentile is not None}
            moved = [p for p, v, _ in members if p not in fresh_products and self.versions.get(p) != v]
            for row in _PRODUCT_STATES.rows(db, moved):
                if row["state"] != EMPTY_STATE:
                    fresh_products[row["product_id"]] = _product(row["state"])
                    self.versions[row["product_id"]] = row["version"]
        fold.refresh(fresh_customers, fresh_products, applied, percentiles)

    def save(
        self,
        fold: FeatureFold,
        customers: Iterable[str],
        products: Iterable[str],
        percentile_products: Iterable[str],
        applied: Iterable[str],
    ) -> None:
        """Write the states of the given customers and products (those the batch's events touched:
        held), the percentiles of ``percentile_products`` (those whose percentile it moved) and the
        event ids."""
        _write(self.db, fold, self.versions, customers, products, percentile_products, applied)


def _write(
    db: Connection,
    fold: FeatureFold,
    versions: dict[str, int],
    customers: Iterable[str],
    products: Iterable[str],
    percentile_products: Iterable[str],
    applied: Iterable[str],
) -> None:
    """Upsert states (each product's version one more), percentiles, and insert event ids."""
    _upsert(
        db,
        fold_customers,
        [{"customer_id": c, "state": _text(fold.customers[c].to_json())} for c in customers],
    )
    rows: list[dict[str, object]] = []
    for p in products:
        versions[p] = versions.get(p, 0) + 1
        state = fold.products[p]
        rows.append(
            {"product_id": p, "state": _text(state.to_json()), "category": state.category, "version": versions[p]}
        )
    _upsert(db, fold_products, rows)
    percentiles = fold.percentiles()
    _upsert(
        db,
        fold_percentiles,
        [
            {"product_id": p, "percentile": percentiles[p]}
            for p in dict.fromkeys(percentile_products)
            if p in percentiles
        ],
    )
    _insert(db, fold_applied, [{"event_id": e} for e in applied], ignore=True)


def _hold(
    db: Connection,
    table: Table,
    ids: Sequence[str],
    defaults: dict[str, object] | None = None,
    *extra: Column[Any],
) -> list[tuple[Any, ...]]:
    """Hold the state rows of ``ids`` until the transaction ends, creating missing ones with the
    empty state (an upsert: a row lock in PostgreSQL, the database's write lock in SQLite), and
    read them back in the same statement: (id, state, ``extra`` columns) per row."""
    if not ids:
        return []
    (key,) = table.primary_key.columns
    insert = upsert_insert(db, table)
    statement = insert.on_conflict_do_update(index_elements=[key], set_={"state": table.c.state})
    rows = [{key.name: i, "state": EMPTY_STATE, **(defaults or {})} for i in ids]
    return [tuple(row) for row in db.execute(statement.returning(key, table.c.state, *extra), rows)]


def _upsert(db: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    if rows:
        insert = upsert_insert(db, table)
        keys = [column.name for column in table.primary_key.columns]
        rows = list(
            {tuple(row[k] for k in keys): row for row in rows}.values()
        )  # one statement: a key once, its last row
        columns = {name: insert.excluded[name] for name in rows[0] if name not in keys}
        execute_many(db, insert.on_conflict_do_update(index_elements=keys, set_=columns), rows)


def _insert(db: Connection, table: Table, rows: list[dict[str, object]], ignore: bool = False) -> None:
    if rows:
        insert = upsert_insert(db, table)
        execute_many(db, insert.on_conflict_do_nothing() if ignore else insert, rows)


def _text(state: dict[str, object]) -> str:
    """A state as JSON text (orjson: the standard library's encoder took a tenth of a batch)."""
    return orjson.dumps(state).decode()


def _customer(state: str) -> CustomerState:
    return CustomerState.from_json(orjson.loads(state))


def _product(state: str) -> ProductState:
    return ProductState.from_json(orjson.loads(state))
