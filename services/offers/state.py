"""Durable state of the offer service: the decision made for each event, and when offer e-mails
went out per customer (for frequency caps).

Tables in the configured database (`settings.db_url`: SQLite under XSELL_HOME by default,
PostgreSQL in the production profile), shared by every offer-service instance: relational rows
keyed by event id and decision id, read by key and by (customer, time) range, written once per
batch in one transaction. A re-delivered event finds its decision here and the same decision is
produced again (same ids), never a second, different one: reprocessing never duplicates and caps
are not double-counted.

Caps hold across instances. Purchases of one customer normally reach one instance (the topic is
keyed by customer), but not always: an instance that dies mid-batch, a producer that keys
otherwise. So ``record`` checks each e-mail against the e-mails stored so far while it holds the
customer's row in `offer_customer_locks` (a row lock in PostgreSQL, the database's write lock in
SQLite), and an e-mail a cap no longer allows leaves the decision as an in-app offer only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, select
from sqlalchemy.engine import Connection, Engine

from xsell.database import SelectIn, create_tables, engine_for, execute_many, hold_rows, select_in, upsert_insert
from xsell.offers import Channel, OfferDecision, as_utc

metadata = MetaData()
decisions_table = Table(
    "offer_decisions",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("decision", Text, nullable=False),
)
emails_table = Table(
    "offer_emails",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_offer_emails_customer_at", "customer_id", "at"),
)
locks_table = Table(
    "offer_customer_locks",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("touched_at", Float, nullable=False),
)
CAP_WINDOW = timedelta(days=7)  # the longest cap window: e-mails older than this never count
CapRule = Callable[[OfferDecision, tuple[datetime, ...]], str | None]  # the cap an e-mail would break, if any
Downgrade = Callable[[OfferDecision, str], OfferDecision]  # the decision without its e-mail, and why


class OfferStateStore:
    """Decisions and e-mail times in the configured database."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = engine_for(url)
        create_tables(metadata, self.engine)

    def decided(self, event_ids: Iterable[str]) -> dict[str, OfferDecision]:
        """Decisions already made for these events."""
        with self.engine.connect() as db:
            return _decided(db, event_ids)

    def latest(self, limit: int) -> list[OfferDecision]:
        """The ``limit`` decisions stored last, newest first."""
        query = select(decisions_table.c.decision).order_by(decisions_table.c.seq.desc()).limit(limit)
        with self.engine.connect() as db:
            return [OfferDecision.model_validate_json(d) for d in db.execute(query).scalars()]

    def email_times(self, customer_ids: Iterable[str], since: datetime) -> dict[str, tuple[datetime, ...]]:
        """When offer e-mails went to each customer since `since` (event time)."""
        with self.engine.connect() as db:
            return _email_times(db, customer_ids, since)

    def record(
        self,
        decisions: Sequence[OfferDecision],
        payloads: Sequence[bytes] | None = None,
        cap: CapRule | None = None,
        downgrade: Downgrade | None = None,
    ) -> tuple[list[OfferDecision], list[bytes]]:
        """Store decisions and their e-mails in one transaction; return them as stored, with their
        JSON (``payloads``: the decisions' ``to_bytes``, computed here when not given). A decision
        another instance stored first for the same event is that one; an e-mail that ``cap``
        refuses, given the customer's e-mails stored so far, becomes ``downgrade(decision, rule)``
        (no e-mail). Idempotent."""
        given = list(payloads) if payloads is not None else [d.to_bytes() for d in decisions]
        final: list[OfferDecision] = []
        final_payloads: list[bytes] = []
        with self.engine.begin() as db:
            mailing = sorted({d.customer_id for d in decisions if d.customer_id and Channel.EMAIL in d.channels})
            hold_rows(db, locks_table, mailing)  # sorted: two instances lock the customers they share in one order
            stored = _decided(db, (d.event_id for d in decisions))
            since = min((as_utc(d.occurred_at) for d in decisions), default=None)
            sent = _email_times(db, mailing, since - CAP_WINDOW) if since is not None and mailing else {}
            new: dict[str, tuple[OfferDecision, bytes]] = {}
            for decision, payload in zip(decisions, given, strict=True):
                if decision.event_id in stored:  # stored before, or earlier in this batch
                    decision = stored[decision.event_id]
                    payload = new[decision.event_id][1] if decision.event_id in new else decision.to_bytes()
                elif decision.customer_id and Channel.EMAIL in decision.channels:
                    customer = decision.customer_id
                    rule = cap(decision, sent.get(customer, ())) if cap else None
                    if rule is not None and downgrade is not None:
                        decision = downgrade(decision, rule)
                        payload = decision.to_bytes()
                    else:
                        sent[customer] = (*sent.get(customer, ()), as_utc(decision.occurred_at))
                if decision.event_id not in stored:
                    stored[decision.event_id] = decision
                    new[decision.event_id] = (decision, payload)
                final.append(decision)
                final_payloads.append(payload)
            _insert_new(db, decisions_table, [{"event_id": e, "decision": p.decode()} for e, (_, p) in new.items()])
            _insert_new(
                db,
                emails_table,
                [
                    {"decision_id": d.decision_id, "customer_id": d.customer_id, "at": as_utc(d.occurred_at)}
                    for d, _ in new.values()
                    if Channel.EMAIL in d.channels and d.customer_id
                ],
            )
        return final, final_payloads

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


_DECISIONS = SelectIn(select(decisions_table.c.event_id, decisions_table.c.decision), decisions_table.c.event_id)


def _decided(db: Connection, event_ids: Iterable[str]) -> dict[str, OfferDecision]:
    return {
        row["event_id"]: OfferDecision.model_validate_json(row["decision"]) for row in _DECISIONS.rows(db, event_ids)
    }


def _email_times(db: Connection, customer_ids: Iterable[str], since: datetime) -> dict[str, tuple[datetime, ...]]:
    ids = set(customer_ids)
    times: dict[str, list[datetime]] = {c: [] for c in ids}
    query = select(emails_table.c.customer_id, emails_table.c.at).where(emails_table.c.at >= as_utc(since))
    for row in select_in(db, query, emails_table.c.customer_id, ids):
        times[row["customer_id"]].append(as_utc(row["at"]))
    return {c: tuple(sorted(t)) for c, t in times.items()}


def _insert_new(db: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    """Insert rows, skipping those whose key is stored (another instance may have stored them)."""
    execute_many(db, upsert_insert(db, table).on_conflict_do_nothing(), rows)
