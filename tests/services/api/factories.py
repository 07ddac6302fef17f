"""Builders shared by the API tests: offer decisions, the in-memory feedback publisher, and
storing decisions through the inbox consumer's own batch step."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.api.feedback import FeedbackPublishError
from services.inbox.consumer import InboxService
from services.inbox.store import InboxStore, OfferStatus
from tests.conftest import FakeRecord
from xsell.events import PurchaseEvent
from xsell.offers import (
    Channel,
    FeedbackEvent,
    OfferDecision,
    OfferItem,
    OfferType,
    decision_id_for,
    offer_id_for,
)
from xsell.settings import Settings

T0 = datetime(2011, 5, 1, 12, 0, tzinfo=UTC)


class RecordingPublisher:
    """Keeps published feedback in memory; `fail` makes it refuse like an unreachable broker."""

    def __init__(self) -> None:
        self.events: list[FeedbackEvent] = []
        self.fail = False

    def publish(self, event: FeedbackEvent) -> None:
        if self.fail:
            raise FeedbackPublishError("broker unavailable")
        self.events.append(event)


def make_decision(
    order_id: str,
    customer_id: str = "C1",
    products: tuple[str, ...] = ("P1", "P2"),
    channels: tuple[Channel, ...] = (Channel.IN_APP, Channel.EMAIL),
    minutes: int = 0,
    name: str | None = None,
) -> OfferDecision:
    """A decision with one offer per product, decided `minutes` after T0."""
    return OfferDecision(
        decision_id=decision_id_for(f"event-{order_id}"),
        event_id=f"event-{order_id}",
        order_id=order_id,
        customer_id=customer_id,
        occurred_at=T0 + timedelta(minutes=minutes),
        decided_at=T0 + timedelta(minutes=minutes, seconds=1),
        model_version="xsell-ranker/3",
        offers=tuple(
            OfferItem(
                offer_id=offer_id_for(order_id, product),
                product_id=product,
                name=name or f"ITEM {product}",
                price=4.95 + rank,
                offer_type=OfferType.CROSS_SELL if rank == 1 else OfferType.UP_SELL,
                rank=rank,
                score=1.0 / rank,
                reason=f"Often bought with your order {order_id}",
            )
            for rank, product in enumerate(products, start=1)
        ),
        channels=channels,
    )


def deliver(settings: Settings, store: InboxStore, *decisions: OfferDecision) -> None:
    """Run the inbox consumer's batch handler over these decisions, as consumed records."""
    records = [FakeRecord(value=d.to_bytes(), key=d.key(), topic="offers", offset=i) for i, d in enumerate(decisions)]
    InboxService(settings, store=store).handle(records)  # type: ignore[arg-type]


def status_of(store: InboxStore, offer_id: str) -> OfferStatus | None:
    """The stored status of an offer, None if it is not stored."""
    offer = store.offer(offer_id)
    return offer.status if offer else None


class RecordingEvents:
    """Keeps produced purchases and decisions in memory (the API's `EventPublisher`)."""

    def __init__(self) -> None:
        self.purchases: list[PurchaseEvent] = []
        self.decisions: list[OfferDecision] = []

    def publish_purchases(self, events: Sequence[PurchaseEvent]) -> None:
        self.purchases += events

    def record_decisions(self, decisions: Sequence[OfferDecision]) -> None:
        self.decisions += decisions

    def close(self) -> None:
        pass
