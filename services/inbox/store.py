"""The in-app offer store: one row per offer (offer id as primary key) in the xsell database.

SQLite under XSELL_HOME by default, any SQLAlchemy URL by `XSELL_DATABASE_URL`. Storing a decision
again (a redelivery, a replay) updates what the offer says but never its status, so a dismissed or
converted offer stays so. Times are stored in UTC. A store created before offers had bundles gets
their columns when it is opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, RowMapping

from xsell.database import SelectIn, add_missing_columns, create_tables, engine_for, execute_many
from xsell.offers import OfferContext, OfferDecision, OfferType, as_utc


class OfferStatus(StrEnum):
    """Where an in-app offer stands: shown while active; converted wins over dismissed."""

    ACTIVE = "active"
    DISMISSED = "dismissed"
    CONVERTED = "converted"


metadata = MetaData()
inbox_offers = Table(
    "inbox_offers",
    metadata,
    Column("offer_id", String(64), primary_key=True),
    Column("decision_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("product_id", String(128), nullable=False),
    Column("name", String(512)),
    Column("price", Float),
    Column("offer_type", String(16), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("model_version", String(256)),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_changed_at", DateTime(timezone=True)),
    Column("bundle_id", String(64)),
    Column("bundle_price", Float),
    Column("context", String(16)),  # NULL: a follow-up of a purchase (rows stored before contexts)
    Index("ix_inbox_offers_customer", "customer_id", "status", "decided_at"),
    Index("ix_inbox_offers_product", "product_id", "decided_at"),
)

_CONTENT = (
    "decision_id",
    "customer_id",
    "product_id",
    "name",
    "price",
    "offer_type",
    "rank",
    "score",
    "reason",
    "model_version",
    "decided_at",
    "bundle_id",
    "bundle_price",
    "context",
)


_STORED_CONTENT = SelectIn(
    select(inbox_offers.c.offer_id, *(inbox_offers.c[name] for name in _CONTENT)), inbox_offers.c.offer_id
)


def _same_content(stored: RowMapping, content: Mapping[str, object]) -> bool:
    """Whether a stored row holds this content (a time as the same instant, however stored)."""
    return all(
        as_utc(stored[name]) == content[name] if name == "decided_at" else stored[name] == content[name]
        for name in _CONTENT
    )


@dataclass(frozen=True)
class InboxOffer:
    """One stored in-app offer."""

    offer_id: str
    decision_id: str
    customer_id: str
    product_id: str
    name: str | None
    price: float | None
    offer_type: OfferType
    rank: int
    score: float
    reason: str
    model_version: str | None
    decided_at: datetime
    status: OfferStatus
    bundle_id: str | None = None  # a part of a "complete the set" bundle (`xsell.offers`)
    bundle_price: float | None = None
    context: str | None = None  # where the offer was asked for (`xsell.offers.OfferContext`; None: post-purchase)

    @classmethod
    def from_row(cls, row: RowMapping) -> InboxOffer:
        """Build from a table row (SQLite gives naive times: they are UTC)."""
        return cls(
            **{
                **{name: row[name] for name in ("offer_id", *_CONTENT)},
                "offer_type": OfferType(row["offer_type"]),
                "decided_at": as_utc(row["decided_at"]),
                "status": OfferStatus(row["status"]),
            }
        )


def rows_of(decision: OfferDecision) -> list[dict[str, object]]:
    """The table rows (content only, no status) of a decision's offers; none without a customer."""
    if decision.customer_id is None:
        return []
    return [
        {
            "offer_id": item.offer_id,
            "decision_id": decision.decision_id,
            "customer_id": decision.customer_id,
            "product_id": item.product_id,
            "name": item.name,
            "price": item.price,
            "offer_type": item.offer_type.value,
            "rank": item.rank,
            "score": item.score,
            "reason": item.reason,
            "model_version": decision.model_version,
            "decided_at": as_utc(decision.decided_at),
            "bundle_id": item.bundle_id,
            "bundle_price": item.bundle_price,
            "context": decision.context.value,
        }
        for item in decision.offers
    ]


class InboxStore:
    """Store in-app offers, list a customer's active ones, and record dismissals and conversions."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = engine_for(url)
        create_tables(metadata, self.engine)
        add_missing_columns(inbox_offers, self.engine)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as db:
            db.execute(text("SELECT 1"))

    def store_decisions(self, decisions: Iterable[OfferDecision]) -> int:
        """Upsert every offer of these decisions in one transaction; return how many were new."""
        rows = {row["offer_id"]: row for decision in decisions for row in rows_of(decision)}
        if not rows:
            return 0
        table = inbox_offers
        with self.engine.begin() as db:
            stored = {row["offer_id"]: row for row in _STORED_CONTENT.rows(db, rows)}
            new = [
                {**row, "status": OfferStatus.ACTIVE.value} for offer_id, row in rows.items() if offer_id not in stored
            ]
            execute_many(db, table.insert(), new)
            for offer_id, row in stored.items():
                content = {name: rows[offer_id][name] for name in _CONTENT}
                if not _same_content(row, content):  # a second store of the same decision writes nothing
                    db.execute(update(table).where(table.c.offer_id == offer_id).values(**content))
        return len(new)

    def offers_for(self, customer_id: str, limit: int = 10) -> list[InboxOffer]:
        """The customer's active follow-up offers (of purchases: what the shop answered on a page
        or at checkout was shown then), newest decision first, best rank first within one."""
        table = inbox_offers
        follow_up = or_(table.c.context.is_(None), table.c.context == OfferContext.POST_PURCHASE.value)
        query = (
            select(table)
            .where(table.c.customer_id == customer_id, table.c.status == OfferStatus.ACTIVE.value, follow_up)
            .order_by(table.c.decided_at.desc(), table.c.rank.asc(), table.c.offer_id)
            .limit(limit)
        )
        with self.engine.connect() as db:
            return [InboxOffer.from_row(row) for row in db.execute(query).mappings()]

    def offer(self, offer_id: str) -> InboxOffer | None:
        """One offer by id, whatever its status."""
        with self.engine.connect() as db:
            row = db.execute(select(inbox_offers).where(inbox_offers.c.offer_id == offer_id)).mappings().first()
        return InboxOffer.from_row(row) if row else None

    def latest_offer_of_product(self, product_id: str) -> InboxOffer | None:
        """The most recent offer of a product (what the demo's product page shows)."""
        query = (
            select(inbox_offers)
            .where(inbox_offers.c.product_id == product_id)
            .order_by(inbox_offers.c.decided_at.desc())
            .limit(1)
        )
        with self.engine.connect() as db:
            row = db.execute(query).mappings().first()
        return InboxOffer.from_row(row) if row else None

    def set_status(self, offer_id: str, status: OfferStatus) -> OfferStatus | None:
        """Move an offer to `status` if allowed (active -> dismissed, anything -> converted).

        Returns the offer's status afterwards, or None if the offer does not exist.
        """
        table = inbox_offers
        allowed_from = {
            OfferStatus.ACTIVE: (),
            OfferStatus.DISMISSED: (OfferStatus.ACTIVE.value,),
            OfferStatus.CONVERTED: (OfferStatus.ACTIVE.value, OfferStatus.DISMISSED.value),
        }[status]
        with self.engine.begin() as db:
            if allowed_from:
                db.execute(
                    update(table)
                    .where(table.c.offer_id == offer_id, table.c.status.in_(allowed_from))
                    .values(status=status.value, status_changed_at=datetime.now(UTC))
                )
            current = db.scalar(select(table.c.status).where(table.c.offer_id == offer_id))
        return OfferStatus(current) if current is not None else None
