"""Offer-quality facts in the xsell database: decisions, offers, suppressions, feedback, purchases
and conversions.

SQLAlchemy Core on `settings.db_url` (SQLite under XSELL_HOME by default, PostgreSQL or any URL by
`XSELL_DATABASE_URL`). Every write is keyed by a deterministic id and ignores rows it already has,
so redelivery and replays change nothing; conversions are the one upsert (a later-arriving, more
recent offer may take over a line's attribution). Times are stored in UTC. Kafka record timestamps
(milliseconds, producer create time) of a purchase and of its decision give the decision latency.
Decisions and offers keep the variant that decided (champion or challenger of a live experiment,
`services.feedback.experiment`), offers the product's name. No e-mail address is stored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.sql.expression import ColumnElement

from services.feedback.attribution import DEFAULT_WINDOW, Conversion, OfferFact, PurchaseLine, attribute, purchase_lines
from xsell.chunks import chunked
from xsell.database import add_missing_columns, create_tables, engine_for, execute_many, select_in, upsert_insert
from xsell.events import PurchaseEvent
from xsell.offers import FeedbackEvent, OfferDecision, as_utc

metadata = MetaData()
decisions = Table(
    "fact_decisions",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("event_id", String(128), nullable=False, index=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_version", String(256)),
    Column("variant", String(16)),  # champion or challenger (None: before variants, or no model)
    Column("context", String(16)),  # where the offers were asked for (None: post-purchase, before contexts)
    Column("offered", Boolean, nullable=False),
    Column("channels", String(64), nullable=False),
    Column("no_offer_reason", String(64)),
    Column("record_ts_ms", BigInteger),
)
offers = Table(
    "fact_offers",
    metadata,
    Column("offer_id", String(64), primary_key=True),
    Column("decision_id", String(64), nullable=False, index=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("product_id", String(128), nullable=False),
    Column("name", String(512)),
    Column("offer_type", String(16), nullable=False),
    Column("model_version", String(256)),
    Column("variant", String(16)),
    Column("context", String(16)),
    Column("rank", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("price", Float),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_fact_offers_customer_product", "customer_id", "product_id"),
    Index("ix_fact_offers_decided", "decided_at"),
)
suppressions = Table(
    "fact_suppressions",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("rule", String(64), primary_key=True),
    Column("product_id", String(128), primary_key=True),  # "" when the rule held back the message
)
feedback = Table(
    "fact_feedback",
    metadata,
    Column("feedback_id", String(64), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("offer_id", String(64), index=True),
    Column("decision_id", String(64), index=True),
    Column("customer_id", String(128)),
    Column("channel", String(16)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)
purchases = Table(
    "fact_purchases",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("customer_id", String(128), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("total", Float, nullable=False),
    Column("record_ts_ms", BigInteger),
)
purchase_lines_table = Table(
    "fact_purchase_lines",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("product_id", String(128), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("revenue", Float, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Index("ix_fact_purchase_lines_customer_product", "customer_id", "product_id"),
)
conversions = Table(
    "fact_conversions",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("product_id", String(128), primary_key=True),
    Column("offer_id", String(64), nullable=False, index=True),
    Column("customer_id", String(128), nullable=False),
    Column("revenue", Float, nullable=False),
    Column("converted_at", DateTime(timezone=True), nullable=False),
    Column("model_version", String(256)),
    Column("offer_type", String(16), nullable=False),
)


def open_facts(url: str) -> Engine:
    """An engine on the facts database, its tables created (and the columns added since a stored
    table was created: decisions' and offers' variant, offers' product name)."""
    engine = engine_for(url)
    create_tables(metadata, engine)
    for table in (decisions, offers):
        add_missing_columns(table, engine)
    return engine


def _insert_ignore(db: Connection, table: Table, rows: Sequence[Mapping[str, object]], *, count: bool = False) -> int:
    """Insert rows whose primary key is new. With `count`, return how many were new (else 0): on
    SQLite and PostgreSQL the insert skips known keys itself (`ON CONFLICT DO NOTHING`, with
    `RETURNING` when counting), elsewhere the known keys are looked up first."""
    if not rows:
        return 0
    keys = [column.name for column in table.primary_key.columns]
    unique = list({tuple(row[k] for k in keys): row for row in rows}.values())
    dialect = db.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        existing = _existing_keys(db, table, keys, unique)
        new = [row for row in unique if tuple(row[k] for k in keys) not in existing]
        if new:
            db.execute(insert(table), new)
        return len(new)
    statement = upsert_insert(db, table).on_conflict_do_nothing(index_elements=keys)
    if not count:
        execute_many(db, statement, unique)
        return 0
    returning = statement.returning(*(table.c[k] for k in keys))
    return sum(len(db.execute(returning, list(chunk)).all()) for chunk in chunked(unique))


def _existing_keys(
    db: Connection, table: Table, keys: list[str], rows: Sequence[Mapping[str, object]]
) -> set[tuple[object, ...]]:
    """Primary keys of `rows` already in `table` (looked up by the first key column)."""
    query = select(*(table.c[k] for k in keys))
    found = select_in(db, query, table.c[keys[0]], (row[keys[0]] for row in rows))
    return {tuple(row[k] for k in keys) for row in found}


def record_decisions(db: Connection, items: Iterable[tuple[OfferDecision, int | None]]) -> list[OfferFact]:
    """Store decisions (with their record timestamps), offers and suppressions; return the offers."""
    decision_rows: list[dict[str, object]] = []
    offer_rows: list[dict[str, object]] = []
    suppression_rows: list[dict[str, object]] = []
    facts: list[OfferFact] = []
    for decision, record_ts_ms in items:
        occurred_at, decided_at = as_utc(decision.occurred_at), as_utc(decision.decided_at)
        decision_rows.append(
            {
                "decision_id": decision.decision_id,
                "event_id": decision.event_id,
                "order_id": decision.order_id,
                "customer_id": decision.customer_id,
                "occurred_at": occurred_at,
                "decided_at": decided_at,
                "model_version": decision.model_version,
                "variant": decision.variant.value if decision.variant else None,
                "context": decision.context.value,
                "offered": decision.offered,
                "channels": ",".join(channel.value for channel in decision.channels),
                "no_offer_reason": decision.no_offer_reason,
                "record_ts_ms": record_ts_ms,
            }
        )
        suppression_rows.extend(
            {"decision_id": decision.decision_id, "rule": s.rule, "product_id": s.product_id or ""}
            for s in decision.suppressed
        )
        if decision.customer_id is None:
            continue
        for item in decision.offers:
            offer_rows.append(
                {
                    "offer_id": item.offer_id,
                    "decision_id": decision.decision_id,
                    "order_id": decision.order_id,
                    "customer_id": decision.customer_id,
                    "product_id": item.product_id,
                    "name": item.name,
                    "offer_type": item.offer_type.value,
                    "model_version": decision.model_version,
                    "variant": decision.variant.value if decision.variant else None,
                    "context": decision.context.value,
                    "rank": item.rank,
                    "score": item.score,
                    "price": item.price,
                    "occurred_at": occurred_at,
                    "decided_at": decided_at,
                }
            )
            facts.append(
                OfferFact(
                    offer_id=item.offer_id,
                    customer_id=decision.customer_id,
                    product_id=item.product_id,
                    order_id=decision.order_id,
                    offered_at=occurred_at,
                    offer_type=item.offer_type.value,
                    model_version=decision.model_version,
                )
            )
    _insert_ignore(db, decisions, decision_rows)
    _insert_ignore(db, offers, offer_rows)
    _insert_ignore(db, suppressions, suppression_rows)
    return facts


def record_feedback(db: Connection, events: Iterable[FeedbackEvent]) -> int:
    """Store feedback facts; return how many were new."""
    rows = [
        {
            "feedback_id": event.feedback_id,
            "type": event.type.value,
            "offer_id": event.offer_id,
            "decision_id": event.details.get("decision_id"),
            "customer_id": event.customer_id,
            "channel": event.channel.value if event.channel else None,
            "occurred_at": as_utc(event.occurred_at),
        }
        for event in events
    ]
    return _insert_ignore(db, feedback, rows, count=True)


def record_purchases(db: Connection, items: Iterable[tuple[PurchaseEvent, int | None]]) -> list[PurchaseLine]:
    """Store purchases of known customers and their lines; return the lines (for attribution)."""
    event_rows: list[dict[str, object]] = []
    lines: list[PurchaseLine] = []
    for event, record_ts_ms in items:
        event_lines = purchase_lines(event)
        if not event_lines:
            continue
        lines.extend(event_lines)
        event_rows.append(
            {
                "event_id": event.event_id,
                "order_id": event.order_id,
                "customer_id": event.customer_id,
                "occurred_at": as_utc(event.occurred_at),
                "total": round(event.total, 6),
                "record_ts_ms": record_ts_ms,
            }
        )
    _insert_ignore(db, purchases, event_rows)
    _insert_ignore(
        db,
        purchase_lines_table,
        [
            {
                "order_id": line.order_id,
                "product_id": line.product_id,
                "customer_id": line.customer_id,
                "quantity": line.quantity,
                "revenue": line.revenue,
                "occurred_at": as_utc(line.occurred_at),
            }
            for line in lines
        ],
    )
    return lines


def facts_for(db: Connection, pairs: set[tuple[str, str]]) -> tuple[list[OfferFact], list[PurchaseLine]]:
    """Every stored offer of these (customer id, product id) pairs, and every stored purchase line
    of those of them that have an offer (a line of a pair never offered converts nothing)."""
    found_offers = [
        OfferFact(
            offer_id=row["offer_id"],
            customer_id=row["customer_id"],
            product_id=row["product_id"],
            order_id=row["order_id"],
            offered_at=as_utc(row["occurred_at"]),
            offer_type=row["offer_type"],
            model_version=row["model_version"],
        )
        for row in _rows_of_pairs(db, offers, pairs)
    ]
    found_lines = [
        PurchaseLine(
            order_id=row["order_id"],
            product_id=row["product_id"],
            customer_id=row["customer_id"],
            quantity=row["quantity"],
            revenue=row["revenue"],
            occurred_at=as_utc(row["occurred_at"]),
        )
        for row in _rows_of_pairs(db, purchase_lines_table, offered_pairs(found_offers))
    ]
    return found_offers, found_lines


def _rows_of_pairs(db: Connection, table: Table, pairs: set[tuple[str, str]]) -> Iterator[RowMapping]:
    """The rows of `table` whose (customer id, product id) is one of `pairs`. On SQLite and
    PostgreSQL the pairs go to the database as one value (a JSON list, two arrays), which it joins
    on its (customer, product) index: a batch asks for some ten thousand pairs, and SQLAlchemy
    expanding them into ``IN`` lists of bound values cost three times the query. Elsewhere the
    rows are looked up by customer and filtered here."""
    if not pairs:
        return
    ordered = sorted(pairs)
    if db.dialect.name == "sqlite":
        yield from db.execute(_pairs_query(table, "sqlite"), {"pairs": orjson.dumps(ordered).decode()}).mappings()
    elif db.dialect.name == "postgresql":
        customers, products = (list(column) for column in zip(*ordered, strict=True))
        yield from db.execute(
            _pairs_query(table, "postgresql"), {"customers": customers, "products": products}
        ).mappings()
    else:
        rows = select_in(db, select(table), table.c.customer_id, (customer for customer, _ in ordered))
        yield from (row for row in rows if (row["customer_id"], row["product_id"]) in pairs)


@functools.cache
def _pairs_query(table: Table, dialect: str) -> Select[Any]:
    """The rows of `table` joined to a list of (customer id, product id) pairs given as the
    ``pairs`` JSON text (SQLite) or the ``customers`` and ``products`` arrays (PostgreSQL)."""
    customer: ColumnElement[Any]
    product: ColumnElement[Any]
    if dialect == "sqlite":
        listed = func.json_each(bindparam("pairs", type_=String)).table_valued("value").alias("listed")
        customer, product = (func.json_extract(listed.c.value, f"$[{at}]") for at in (0, 1))
    else:
        texts = ARRAY(String)
        listed = (
            func.unnest(bindparam("customers", type_=texts), bindparam("products", type_=texts))
            .table_valued("customer_id", "product_id")
            .render_derived(name="listed")  # AS listed(customer_id, product_id)
        )
        customer, product = listed.c.customer_id, listed.c.product_id
    on = (table.c.customer_id == customer) & (table.c.product_id == product)
    return select(table).select_from(listed).join(table, on)


def save_conversions(db: Connection, found: Iterable[Conversion]) -> int:
    """Upsert conversions by (order id, product id); return how many rows were new or changed."""
    rows = {
        (c.order_id, c.product_id): {
            "order_id": c.order_id,
            "product_id": c.product_id,
            "offer_id": c.offer_id,
            "customer_id": c.customer_id,
            "revenue": c.revenue,
            "converted_at": as_utc(c.converted_at),
            "model_version": c.model_version,
            "offer_type": c.offer_type,
        }
        for c in found
    }
    if not rows:
        return 0
    query = select(conversions.c.order_id, conversions.c.product_id, conversions.c.offer_id)
    current: dict[tuple[str, str], str] = {
        (row["order_id"], row["product_id"]): row["offer_id"]
        for row in select_in(db, query, conversions.c.order_id, (order for order, _ in rows))
    }
    new = [row for key, row in rows.items() if key not in current]
    changed = [row for key, row in rows.items() if key in current and current[key] != row["offer_id"]]
    _insert_ignore(db, conversions, new)
    for row in changed:
        db.execute(
            conversions.update()
            .where(conversions.c.order_id == row["order_id"], conversions.c.product_id == row["product_id"])
            .values(**row)
        )
    return len(new) + len(changed)


@dataclass(frozen=True)
class RecordedBatch:
    """What one batch added to the facts."""

    offers: list[OfferFact]
    feedback_new: int
    lines: list[PurchaseLine]
    pairs: int  # (customer, product) pairs whose attribution was re-examined
    conversions: int


def record_batch(
    db: Connection,
    decisions: Iterable[tuple[OfferDecision, int | None]],
    events: Iterable[FeedbackEvent],
    bought: Iterable[tuple[PurchaseEvent, int | None]],
    window: timedelta = DEFAULT_WINDOW,
) -> RecordedBatch:
    """Store one batch of decisions, feedback events and purchases (each with its Kafka timestamp
    where it has one), then attribute the conversions the new offers and lines make possible; in
    the caller's transaction."""
    offers = record_decisions(db, decisions)
    feedback_new = record_feedback(db, events)
    lines = record_purchases(db, bought)
    pairs = offered_pairs(offers) | offered_pairs(lines)
    conversions = save_conversions(db, attribute(*facts_for(db, pairs), window=window)) if pairs else 0
    return RecordedBatch(
        offers=offers, feedback_new=feedback_new, lines=lines, pairs=len(pairs), conversions=conversions
    )


def offered_pairs(found: Iterable[OfferFact | PurchaseLine]) -> set[tuple[str, str]]:
    """The (customer id, product id) pairs of offers or purchase lines."""
    return {(item.customer_id, item.product_id) for item in found}
