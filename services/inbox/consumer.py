"""The inbox consumer behind `xsell inbox`: stores every offer decision meant for the app.

`in_app_decisions` is the pure step (records in, decisions to store out) that unit tests call
without Kafka. A decision is stored when it has a customer, offers, and `in_app` among its
channels. A record that is not a valid decision is logged with its position and skipped (the offer
service is the only producer of `offers`; its input already went through the DLQ). Storing is an
upsert by offer id, so redelivery after a crash and replays store nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from services.inbox.store import InboxStore
from services.messaging import parse_record
from xsell.consumer import ConsumerLoop, Record
from xsell.offers import Channel, OfferDecision
from xsell.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class InboxSummary:
    """What the inbox consumer saw."""

    records: int = 0
    decisions_stored: int = 0
    offers_new: int = 0
    not_in_app: int = 0
    invalid: int = 0


@dataclass(frozen=True)
class BatchSelection:
    """The decisions of a batch to store, and how many records were passed over."""

    decisions: list[OfferDecision]
    not_in_app: int
    invalid: int


def in_app_decisions(records: Sequence[Record]) -> BatchSelection:
    """Parse a batch of `offers` records and keep the decisions with in-app offers for a customer."""
    decisions: list[OfferDecision] = []
    not_in_app = invalid = 0
    for record in records:
        decision = parse_record(record, OfferDecision, log, "invalid offer decision skipped")
        if decision is None:
            invalid += 1
            continue
        if Channel.IN_APP in decision.channels and decision.customer_id and decision.offers:
            decisions.append(decision)
        else:
            not_in_app += 1
    return BatchSelection(decisions=decisions, not_in_app=not_in_app, invalid=invalid)


class InboxService:
    """Consumer group `settings.inbox_group` on `offers`, storing in-app offers in `InboxStore`."""

    def __init__(self, settings: Settings, store: InboxStore | None = None, until_caught_up: bool = False) -> None:
        self.settings = settings
        self.summary = InboxSummary()
        self._store = store
        self.loop = ConsumerLoop(
            settings,
            group_id=settings.inbox_group,
            topics=[settings.topic_offers],
            handler=self.handle,
            client_id="xsell-inbox",
            until_caught_up=until_caught_up,
        )

    @property
    def store(self) -> InboxStore:
        """The store, opened on first use (so constructing the service touches nothing)."""
        if self._store is None:
            self._store = InboxStore(self.settings.db_url)
        return self._store

    def handle(self, records: list[Record]) -> None:
        """Store a batch's in-app decisions in one transaction (the loop commits offsets after)."""
        selection = in_app_decisions(records)
        new = self.store.store_decisions(selection.decisions)
        self.summary.records += len(records)
        self.summary.decisions_stored += len(selection.decisions)
        self.summary.offers_new += new
        self.summary.not_in_app += selection.not_in_app
        self.summary.invalid += selection.invalid
        log.info(
            "batch stored",
            extra={
                "records": len(records),
                "decisions": len(selection.decisions),
                "offers_new": new,
                "not_in_app": selection.not_in_app,
                "invalid": selection.invalid,
            },
        )

    def run(self) -> InboxSummary:
        """Run until SIGTERM (or until caught up); return what was seen."""
        owned = self._store is None
        try:
            self.loop.run()
        finally:
            if owned and self._store is not None:
                self._store.close()
                self._store = None
        return self.summary

    def stop(self) -> None:
        """Ask the service to stop after the current batch."""
        self.loop.stop()
