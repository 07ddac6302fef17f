"""The offer contracts: decisions on `offers` and feedback on `offer-feedback`.

Every purchase event gets exactly one `OfferDecision`, including "no offer", with what was
offered, what each business rule suppressed, the model version and the scores, so that ops can see
why and reprocessing never duplicates: ids are deterministic (decision id from the event id, offer
id from order id + product id). JSON on the wire, key = customer id.

A "complete the set" bundle is several ordinary offers (its parts, each with its own offer id, so
clicks and conversions are per item) that share a ``bundle_id`` and carry the bundle's total
``bundle_price``; ``offer_groups`` puts them back together for display.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Generic, Literal, Protocol, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

OFFER_SCHEMA_VERSION: Final = 1
OFFER_ID_NAMESPACE = uuid.UUID("0c7d3f0e-8a4b-4e59-bd0c-1f6a2b9e7d43")


class OfferType(StrEnum):
    """Cross-sell: a complement. Up-sell: a better, pricier item of the same category."""

    CROSS_SELL = "cross_sell"
    UP_SELL = "up_sell"


class Variant(StrEnum):
    """Which registered model decided: the champion, or the challenger of a live experiment."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"


class OfferContext(StrEnum):
    """Where an offer was asked for: after a purchase (the offer service), or by the shop on request
    (POST /v1/recommendations) on a product page, a cart or at checkout."""

    POST_PURCHASE = "post_purchase"
    PRODUCT_PAGE = "product_page"
    CART = "cart"
    CHECKOUT = "checkout"


class Channel(StrEnum):
    """How an offer reaches the shopper."""

    EMAIL = "email"
    IN_APP = "in_app"


class OfferItem(BaseModel):
    """One offered product with its rank, score and human-readable reason."""

    model_config = ConfigDict(frozen=True)

    offer_id: str
    product_id: str
    name: str | None = None
    price: float | None = None
    offer_type: OfferType
    rank: int = Field(ge=1)
    score: float
    reason: str
    upgrades: str | None = None  # an up-sell: the purchased product it upgrades
    bundle_id: str | None = None  # a part of a "complete the set" bundle: the id its parts share
    bundle_price: float | None = None  # a bundle part: the total of all parts, after the bundle's discount


class Suppression(BaseModel):
    """A candidate (or the whole message, product_id None) held back by a business rule."""

    model_config = ConfigDict(frozen=True)

    rule: str
    product_id: str | None = None
    detail: str = ""


class OfferDecision(BaseModel):
    """What the offer service decided for one purchase event."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = OFFER_SCHEMA_VERSION
    decision_id: str
    event_id: str
    order_id: str
    customer_id: str | None
    customer_email: str | None = None
    marketing_consent: bool = False
    occurred_at: AwareDatetime
    decided_at: AwareDatetime
    model_version: str | None
    variant: Variant | None = None  # the model that decided (None: no model, or a decision from before variants)
    context: OfferContext = OfferContext.POST_PURCHASE  # a follow-up of a purchase, or an answer to the shop
    offers: tuple[OfferItem, ...] = ()
    channels: tuple[Channel, ...] = ()
    suppressed: tuple[Suppression, ...] = ()
    no_offer_reason: str | None = None

    @property
    def offered(self) -> bool:
        """True when at least one offer goes out."""
        return bool(self.offers)

    def key(self) -> bytes | None:
        """Kafka key: the customer id."""
        return self.customer_id.encode() if self.customer_id else None

    def to_bytes(self) -> bytes:
        """JSON wire form."""
        return self.model_dump_json().encode()


class FeedbackType(StrEnum):
    """What happened to an offer after it was sent."""

    IMPRESSION = "impression"
    CLICK = "click"
    DISMISS = "dismiss"
    CONVERT = "convert"
    EMAIL_SENT = "email_sent"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class FeedbackEvent(BaseModel):
    """One feedback fact on `offer-feedback` (key = offer id, or customer id for unsubscribes)."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = OFFER_SCHEMA_VERSION
    feedback_id: str
    type: FeedbackType
    offer_id: str | None
    customer_id: str | None
    channel: Channel | None = None
    occurred_at: AwareDatetime
    details: dict[str, str] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """JSON wire form."""
        return self.model_dump_json().encode()


def offer_id_for(order_id: str, product_id: str) -> str:
    """Deterministic offer id: the same order and product always give the same id."""
    return str(uuid.uuid5(OFFER_ID_NAMESPACE, f"offer:{order_id}:{product_id}"))


def bundle_id_for(order_id: str, product_ids: Iterable[str]) -> str:
    """Deterministic bundle id: the same order and parts (in any order) always give the same id."""
    return str(uuid.uuid5(OFFER_ID_NAMESPACE, f"bundle:{order_id}:{'+'.join(sorted(product_ids))}"))


def decision_id_for(event_id: str) -> str:
    """Deterministic decision id of a purchase event."""
    return str(uuid.uuid5(OFFER_ID_NAMESPACE, f"decision:{event_id}"))


def feedback_id_for(*parts: str) -> str:
    """Deterministic feedback id from what identifies the fact (e.g. offer id, type, request id)."""
    return str(uuid.uuid5(OFFER_ID_NAMESPACE, "feedback:" + ":".join(parts)))


def as_utc(value: datetime) -> datetime:
    """A timezone-aware datetime in UTC (naive values are taken as UTC)."""

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class BundlePart(Protocol):
    """What grouping reads of an offer (an `OfferItem`, or an in-app offer as stored)."""

    @property
    def price(self) -> float | None: ...

    @property
    def bundle_id(self) -> str | None: ...

    @property
    def bundle_price(self) -> float | None: ...


Offer = TypeVar("Offer", bound=BundlePart)


@dataclass(frozen=True)
class OfferGroup(Generic[Offer]):
    """One place of a message: an offer, or the parts of a "complete the set" bundle."""

    offers: tuple[Offer, ...]

    @property
    def is_bundle(self) -> bool:
        """True for the parts of a bundle (a part left alone, the others gone, is shown as an offer)."""
        return len(self.offers) > 1

    @property
    def total(self) -> float | None:
        """A bundle's price, after its discount (None for an offer, or a bundle without a price)."""
        return self.offers[0].bundle_price if self.is_bundle else None

    @property
    def saving(self) -> float | None:
        """What a bundle's discount saves on the sum of its parts' prices (None without a discount)."""
        prices = [offer.price for offer in self.offers]
        if self.total is None or any(price is None for price in prices):
            return None
        saving = round(sum(price or 0.0 for price in prices) - self.total, 2)
        return saving if saving > 0 else None


def offer_groups(offers: Iterable[Offer]) -> list[OfferGroup[Offer]]:
    """The offers in their order, one group each, except that the parts of one bundle (one
    ``bundle_id``) make one group at the place of the first of them."""
    places: list[list[Offer]] = []
    bundles: dict[str, list[Offer]] = {}
    for offer in offers:
        if offer.bundle_id is None:
            places.append([offer])
        elif offer.bundle_id in bundles:
            bundles[offer.bundle_id].append(offer)
        else:
            bundles[offer.bundle_id] = [offer]
            places.append(bundles[offer.bundle_id])
    return [OfferGroup(tuple(place)) for place in places]
