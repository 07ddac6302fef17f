"""`/v1` offers for the shop's backend: list a customer's in-app offers, report what happened to one.

An event on an offer that does not exist and one on another customer's offer get the same 404, so
offer ids cannot be probed across customers. An event is published to `offer-feedback` before the
offer's status changes; its feedback id is derived from offer id, type and the caller's
`Idempotency-Key` (or `X-Request-ID`), so a retried request is one fact downstream.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.api.deps import InboxDep, PublisherDep, require_api_key
from services.api.feedback import FeedbackPublishError
from services.inbox.store import OfferStatus
from xsell.offers import Channel, FeedbackEvent, FeedbackType, OfferType, feedback_id_for

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """What an error response says (FastAPI's `HTTPException` body)."""

    detail: str


def retry_later(description: str) -> dict[str, Any]:
    """The OpenAPI response of an error that says, in `Retry-After`, when to send again."""
    header = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
    return {"model": ErrorDetail, "description": description, "headers": {"Retry-After": header}}


def unavailable(detail: str, retry_after_s: int) -> HTTPException:
    """A 503 that says when to send again."""
    return HTTPException(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail, headers={"Retry-After": str(retry_after_s)}
    )


# what every route behind the key and its rate limit may answer (`deps.require_api_key`, `deps.limit_rate`)
KEYED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing or invalid `X-API-Key`."},
    429: retry_later("Over this key's request rate."),
}


router = APIRouter(
    prefix="/v1",
    tags=["offers"],
    dependencies=[Depends(require_api_key)],
    responses={401: {"model": ErrorDetail, "description": "Missing or invalid `X-API-Key`."}},
)

Identifier = Annotated[str, Path(min_length=1, max_length=128)]


class OfferPublic(BaseModel):
    """An active in-app offer as the shop shows it."""

    model_config = ConfigDict(from_attributes=True)

    offer_id: str
    decision_id: str
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
    bundle_id: str | None = Field(
        default=None, description='A part of a "complete the set" bundle: the id its parts share (show them as one).'
    )
    bundle_price: float | None = Field(
        default=None, description="A bundle part: the bundle's total, after its discount."
    )


class OffersPublic(BaseModel):
    """A customer's active offers, newest first."""

    customer_id: str
    count: int
    offers: list[OfferPublic]


class OfferEventType(StrEnum):
    """What the shop reports about an in-app offer."""

    IMPRESSION = "impression"
    CLICK = "click"
    DISMISS = "dismiss"
    CONVERT = "convert"


class OfferEventIn(BaseModel):
    """An event on an offer, reported for the customer it was made to."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=128)
    type: OfferEventType
    occurred_at: AwareDatetime | None = Field(default=None, description="When it happened; default: now.")


class OfferEventAccepted(BaseModel):
    """The event was published to `offer-feedback`."""

    feedback_id: str
    offer_id: str
    type: OfferEventType
    offer_status: OfferStatus


STATUS_AFTER = {OfferEventType.DISMISS: OfferStatus.DISMISSED, OfferEventType.CONVERT: OfferStatus.CONVERTED}
NOT_FOUND = "Offer not found."


@router.get("/customers/{customer_id}/offers", response_model=OffersPublic)
def read_customer_offers(
    customer_id: Identifier,
    inbox: InboxDep,
    limit: Annotated[int, Query(ge=1, le=50, description="At most this many offers.")] = 10,
) -> OffersPublic:
    """The customer's active in-app offers, newest decision first (empty if there are none)."""
    offers = [OfferPublic.model_validate(offer) for offer in inbox.offers_for(customer_id, limit)]
    return OffersPublic(customer_id=customer_id, count=len(offers), offers=offers)


@router.post(
    "/offers/{offer_id}/events",
    response_model=OfferEventAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        400: {"model": ErrorDetail, "description": "The body is not valid JSON."},
        404: {"model": ErrorDetail, "description": NOT_FOUND},
        503: {"model": ErrorDetail, "description": "offer-feedback unavailable; retry."},
    },
)
def create_offer_event(
    offer_id: Identifier,
    event: OfferEventIn,
    inbox: InboxDep,
    publisher: PublisherDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
    x_request_id: Annotated[str | None, Header(max_length=128)] = None,
) -> OfferEventAccepted:
    """Publish an impression, click, dismissal or conversion; dismiss and convert update the offer."""
    offer = inbox.offer(offer_id)
    if offer is None or offer.customer_id != event.customer_id:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)
    request_key = idempotency_key or x_request_id or str(uuid.uuid4())
    response.headers["X-Request-ID"] = request_key
    feedback = FeedbackEvent(
        feedback_id=feedback_id_for(offer_id, event.type.value, request_key),
        type=FeedbackType(event.type.value),
        offer_id=offer_id,
        customer_id=offer.customer_id,
        channel=Channel.IN_APP,
        occurred_at=event.occurred_at or datetime.now(UTC),
        details={"decision_id": offer.decision_id, "product_id": offer.product_id},
    )
    try:
        publisher.publish(feedback)
    except FeedbackPublishError as error:
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from error
    offer_status = offer.status
    if event.type in STATUS_AFTER:
        offer_status = inbox.set_status(offer_id, STATUS_AFTER[event.type]) or offer_status
    log.info("offer event accepted", extra={"type": event.type.value, "offer_status": offer_status.value})
    return OfferEventAccepted(
        feedback_id=feedback.feedback_id, offer_id=offer_id, type=event.type, offer_status=offer_status
    )
