"""Builders of constructed purchases, offer decisions and feedback facts for the feedback-loop tests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from xsell.events import EventType, LineItem, PurchaseEvent, event_id_for
from xsell.offers import (
    Channel,
    FeedbackEvent,
    FeedbackType,
    OfferDecision,
    OfferItem,
    OfferType,
    Suppression,
    Variant,
    decision_id_for,
    feedback_id_for,
    offer_id_for,
)

T0 = datetime(2011, 3, 1, 12, 0, tzinfo=UTC)
DECIDED = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def purchase(order_id: str, customer_id: str | None, at: datetime, *lines: tuple[str, int, float]) -> PurchaseEvent:
    """A purchase event with (product id, quantity, unit price) lines."""
    return PurchaseEvent(
        event_id=event_id_for(order_id, EventType.PURCHASE),
        order_id=order_id,
        customer_id=customer_id,
        occurred_at=at,
        lines=tuple(LineItem(product_id=p, quantity=q, unit_price=u) for p, q, u in lines),
    )


def decision(
    order_id: str,
    customer_id: str,
    at: datetime,
    *products: tuple[str, OfferType],
    model_version: str | None = "1",
    decided_at: datetime = DECIDED,
    suppressed: tuple[Suppression, ...] = (),
    variant: Variant | None = None,
    names: Mapping[str, str] | None = None,
) -> OfferDecision:
    """The decision answering purchase `order_id`, offering these (product id, type) pairs (named
    from `names` where it has the product), decided by `variant`."""
    event_id = event_id_for(order_id, EventType.PURCHASE)
    items = tuple(
        OfferItem(
            offer_id=offer_id_for(order_id, product),
            product_id=product,
            name=(names or {}).get(product),
            price=5.0,
            offer_type=kind,
            rank=rank,
            score=1.0 / rank,
            reason="test",
        )
        for rank, (product, kind) in enumerate(products, start=1)
    )
    return OfferDecision(
        decision_id=decision_id_for(event_id),
        event_id=event_id,
        order_id=order_id,
        customer_id=customer_id,
        occurred_at=at,
        decided_at=decided_at,
        model_version=model_version,
        variant=variant,
        offers=items,
        channels=(Channel.EMAIL, Channel.IN_APP) if items else (),
        suppressed=suppressed,
        no_offer_reason=None if items else "no_eligible_candidates",
    )


def feedback(
    kind: FeedbackType,
    offer_id: str | None,
    customer_id: str = "C1",
    *,
    decision_id: str | None = None,
    at: datetime = DECIDED + timedelta(hours=1),
    salt: str = "",
) -> FeedbackEvent:
    """A feedback fact with a deterministic id."""
    return FeedbackEvent(
        feedback_id=feedback_id_for(str(offer_id or decision_id), kind.value, salt),
        type=kind,
        offer_id=offer_id,
        customer_id=customer_id,
        channel=Channel.EMAIL if kind.value.startswith(("email", "bounced")) else Channel.IN_APP,
        occurred_at=at,
        details={"decision_id": decision_id} if decision_id else {},
    )
