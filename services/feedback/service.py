"""The feedback service behind `xsell feedback`: offer-quality facts and purchase attribution.

One consumer group (default `xsell-feedback`) on three topics: `offers` (decisions, offers and
suppressions), `offer-feedback` (impressions, clicks, e-mail facts...) and `purchases` (purchase
lines of known customers, then attribution). Each batch is written in one transaction before the
loop commits offsets (at-least-once); every write is keyed by a deterministic id, so redelivery and
replays change nothing.

Order between topics does not matter: purchase lines are stored, and a batch re-attributes every
(customer, product) pair it touched — from a new offer or a new purchase line — over all stored
facts of that pair. A purchase read before the decision it converts is attributed when the
decision arrives. Stored purchase lines are kept (they also give the order values of the report).
Records that are not valid facts are logged with their position and skipped: `purchases` was
validated by ingestion (which owns the DLQ), and the other two topics have one producer each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.engine import Engine

from services.feedback.attribution import DEFAULT_WINDOW
from services.feedback.facts import open_facts, record_batch
from services.messaging import parse_record
from xsell.consumer import ConsumerLoop, Record
from xsell.events import EventRejected, PurchaseEvent, parse_purchase_event
from xsell.offers import FeedbackEvent, OfferDecision
from xsell.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GROUP = "xsell-feedback"
Fact = TypeVar("Fact", OfferDecision, FeedbackEvent)


@dataclass
class FeedbackStats:
    """What the feedback service saw and wrote."""

    records: int = 0
    decisions: int = 0
    offers: int = 0
    feedback: int = 0
    feedback_new: int = 0
    purchases: int = 0
    purchase_lines: int = 0
    conversions_written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count a record passed over."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class FeedbackService:
    """Consume `offers`, `offer-feedback` and `purchases` into the facts database and attribute."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str = DEFAULT_GROUP,
        window: timedelta = DEFAULT_WINDOW,
        until_caught_up: bool = False,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.window = window
        self.stats = FeedbackStats()
        self._engine = engine
        self.loop = ConsumerLoop(
            settings,
            group_id=group_id,
            topics=[settings.topic_offers, settings.topic_offer_feedback, settings.topic_purchases],
            handler=self.handle,
            client_id="xsell-feedback",
            until_caught_up=until_caught_up,
        )

    @property
    def engine(self) -> Engine:
        """The facts database, opened on first use (constructing the service touches nothing)."""
        if self._engine is None:
            self._engine = open_facts(self.settings.db_url)
        return self._engine

    def handle(self, records: list[Record]) -> None:
        """Store one batch's facts and attribute, in one transaction (offsets are committed after)."""
        decisions: list[tuple[OfferDecision, int | None]] = []
        events: list[FeedbackEvent] = []
        bought: list[tuple[PurchaseEvent, int | None]] = []
        for record in records:
            if record.topic == self.settings.topic_offers:
                decision = self._parse(record, OfferDecision, "invalid_decision")
                if decision is not None:
                    decisions.append((decision, record.timestamp))
            elif record.topic == self.settings.topic_offer_feedback:
                event = self._parse(record, FeedbackEvent, "invalid_feedback")
                if event is not None:
                    events.append(event)
            else:
                try:
                    bought.append((parse_purchase_event(record.value, self.settings.max_event_bytes), record.timestamp))
                except EventRejected:
                    self.stats.skip("invalid_purchase")  # ingestion dead-letters it
        with self.engine.begin() as db:
            recorded = record_batch(db, decisions, events, bought, window=self.window)
        self.stats.records += len(records)
        self.stats.decisions += len(decisions)
        self.stats.offers += len(recorded.offers)
        self.stats.feedback += len(events)
        self.stats.feedback_new += recorded.feedback_new
        self.stats.purchases += len(bought)
        self.stats.purchase_lines += len(recorded.lines)
        self.stats.conversions_written += recorded.conversions
        log.info(
            "batch stored",
            extra={
                "records": len(records),
                "decisions": len(decisions),
                "feedback": len(events),
                "purchases": len(bought),
                "pairs": recorded.pairs,
                "conversions_written": recorded.conversions,
            },
        )

    def _parse(self, record: Record, model: type[Fact], reason: str) -> Fact | None:
        """Validate one JSON record, or count and log it (position only) and return None."""
        parsed = parse_record(record, model, log, "invalid record skipped", reason=reason)
        if parsed is None:
            self.stats.skip(reason)
        return parsed

    def run(self) -> FeedbackStats:
        """Run until SIGTERM (or until caught up); return what was seen."""
        owned = self._engine is None
        try:
            self.loop.run()
        finally:
            if owned and self._engine is not None:
                self._engine.dispose()
                self._engine = None
        return self.stats

    def stop(self) -> None:
        """Ask the service to stop after the current batch."""
        self.loop.stop()
