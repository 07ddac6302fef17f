"""Purchase attribution: which offer, if any, a purchased line converts.

A purchase line converts an offer when the same customer buys the offered product strictly after
the offer and at most `window` later (default 7 days; a purchase exactly at offer time + window
counts, one microsecond later does not). Offer time is the event time of the purchase the offer
answered (`OfferDecision.occurred_at`), so replayed history and live traffic are judged on one
clock. The order that triggered the offer never converts it. One purchase line (order id +
product id) is attributed at most once, to the most recent eligible offer (ties: the smallest
offer id). The function is pure and deterministic: the same facts, in any order and with any
duplicates, give the same conversions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from xsell.events import EventType, PurchaseEvent

DEFAULT_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class OfferFact:
    """What attribution needs of an offer that went out."""

    offer_id: str
    customer_id: str
    product_id: str
    order_id: str
    offered_at: datetime
    offer_type: str
    model_version: str | None


@dataclass(frozen=True)
class PurchaseLine:
    """One product of one order (lines of the same product in an order are summed)."""

    order_id: str
    product_id: str
    customer_id: str
    quantity: int
    revenue: float
    occurred_at: datetime


@dataclass(frozen=True)
class Conversion:
    """A purchase line attributed to the offer it converted."""

    order_id: str
    product_id: str
    offer_id: str
    customer_id: str
    revenue: float
    converted_at: datetime
    model_version: str | None
    offer_type: str


def purchase_lines(event: PurchaseEvent) -> list[PurchaseLine]:
    """The attributable lines of a purchase event: none for cancellations and anonymous orders."""
    if event.event_type is not EventType.PURCHASE or event.customer_id is None:
        return []
    quantity: dict[str, int] = defaultdict(int)
    revenue: dict[str, float] = defaultdict(float)
    for line in event.lines:
        quantity[line.product_id] += line.quantity
        revenue[line.product_id] += line.quantity * line.unit_price
    return [
        PurchaseLine(
            order_id=event.order_id,
            product_id=product,
            customer_id=event.customer_id,
            quantity=quantity[product],
            revenue=round(revenue[product], 6),
            occurred_at=event.occurred_at,
        )
        for product in sorted(quantity)
    ]


def attribute(
    offers: Iterable[OfferFact], lines: Iterable[PurchaseLine], window: timedelta = DEFAULT_WINDOW
) -> list[Conversion]:
    """Attribute each purchase line to the most recent eligible offer; sorted by (order id, product id)."""
    by_pair: dict[tuple[str, str], dict[str, OfferFact]] = defaultdict(dict)
    for offer in offers:
        by_pair[(offer.customer_id, offer.product_id)][offer.offer_id] = offer
    unique = {(line.order_id, line.product_id): line for line in lines}
    conversions: list[Conversion] = []
    for key in sorted(unique):
        line = unique[key]
        eligible = [
            offer
            for offer in by_pair.get((line.customer_id, line.product_id), {}).values()
            if offer.order_id != line.order_id and offer.offered_at < line.occurred_at <= offer.offered_at + window
        ]
        if not eligible:
            continue
        # `max` keeps the first of equals: sorted by offer id first, the smallest id wins a tie.
        best = max(sorted(eligible, key=lambda offer: offer.offer_id), key=lambda offer: offer.offered_at)
        conversions.append(
            Conversion(
                order_id=line.order_id,
                product_id=line.product_id,
                offer_id=best.offer_id,
                customer_id=line.customer_id,
                revenue=line.revenue,
                converted_at=line.occurred_at,
                model_version=best.model_version,
                offer_type=best.offer_type,
            )
        )
    return conversions
