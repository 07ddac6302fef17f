"""`POST /v1/recommendations`: offers on request for a product page, a cart or a checkout.

The shop's backend sends the items on the page or in the cart (and the customer, when signed in)
and gets ranked offers back from the model that serves post-purchase offers, through the same
candidates, features and rules (`services.offers.recommend`). Each answer is a decision with its
own offer ids, recorded on `offers` (`context` says where it was asked for), so the shop reports
impressions, clicks and conversions with `POST /v1/offers/{offer_id}/events` as for any offer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.api.deps import RecommenderDep, SettingsDep, limit_rate, require_api_key
from services.api.routes.offers import KEYED_RESPONSES, ErrorDetail, retry_later, unavailable
from services.offers.recommend import NoModelError, OfferRequest, RequestItem
from xsell.events import MAX_LINE_QUANTITY, MAX_UNIT_PRICE, as_integer
from xsell.metrics import RECOMMENDATION_SECONDS
from xsell.offers import OfferContext, OfferType, Variant

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5

router = APIRouter(
    prefix="/v1",
    tags=["recommendations"],
    dependencies=[Depends(require_api_key), Depends(limit_rate)],
    responses=KEYED_RESPONSES,
)


class CartItem(BaseModel):
    """A product on the page or in the cart."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as the purchase contract: no coercion

    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(default=1, gt=0, le=MAX_LINE_QUANTITY)
    unit_price: float | None = Field(
        default=None,
        ge=0,
        le=MAX_UNIT_PRICE,
        allow_inf_nan=False,
        description="What the customer pays per unit; default the product's current price.",
    )

    _integral_quantity = field_validator("quantity", mode="before")(as_integer)


class RecommendationRequest(BaseModel):
    """Offers for these items, where the shop shows them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The signed-in customer; none for an anonymous cart."
    )
    context: Literal["product_page", "cart", "checkout"] = Field(
        description="product_page: what goes with the product and what it upgrades to; cart: offers for the basket "
        "(and, below the free-delivery threshold, one that closes the gap); checkout: up-sells of cart items first."
    )
    items: list[CartItem] = Field(min_length=1, max_length=200)
    limit: int | None = Field(default=None, ge=1, le=100, description="At most this many offers; default 3.")

    _integral_limit = field_validator("limit", mode="before")(as_integer)


class RecommendedOffer(BaseModel):
    """One ranked offer."""

    offer_id: str = Field(
        description="Report impressions, clicks and conversions on it (POST /v1/offers/{offer_id}/events)."
    )
    product_id: str
    name: str | None
    price: float | None
    offer_type: OfferType
    reason: str
    score: float
    rank: int
    upgrades: str | None = Field(default=None, description="An up-sell: the item of the request it upgrades.")
    bundle_id: str | None = Field(default=None, description='A part of a "complete the set" bundle.')
    bundle_price: float | None = Field(default=None, description="A bundle part: the bundle's total.")


class PricedCartItem(BaseModel):
    """An item of the request as it was ranked."""

    product_id: str
    name: str | None
    quantity: int
    unit_price: float = Field(description="As sent, or the product's current price (0 for an unknown product).")


class Recommendations(BaseModel):
    """The answer: the decision's id, the items as ranked, and the offers, best first."""

    decision_id: str
    context: OfferContext
    customer_id: str | None
    model_version: str | None
    variant: Variant | None
    items: list[PricedCartItem]
    offers: list[RecommendedOffer]
    no_offer_reason: str | None = None


@router.post(
    "/recommendations",
    response_model=Recommendations,
    responses={
        200: {
            "description": "Ranked offers.",
            "headers": {
                "Server-Timing": {
                    "description": "`recommend;dur=MS`: the time the answer took in the API (queue and ranking).",
                    "schema": {"type": "string"},
                }
            },
        },
        400: {"model": ErrorDetail, "description": "The body is not JSON."},
        422: {"description": "The body is not valid: every failing field is listed."},
        503: retry_later("No model is serving yet, or the recommender is unavailable; retry."),
    },
)
async def create_recommendations(
    body: RecommendationRequest, settings: SettingsDep, recommender: RecommenderDep, response: Response
) -> Recommendations:
    """Ranked cross-sell and up-sell offers for the items; never an item of the request or one the customer owns."""
    started = time.perf_counter()
    context = OfferContext(body.context)
    request = OfferRequest(
        context=context,
        items=tuple(RequestItem(i.product_id, i.quantity, i.unit_price) for i in body.items),
        customer_id=body.customer_id,
        limit=min(body.limit or settings.max_offers_per_message, settings.recommendation_max_offers),
    )
    try:
        answer = await asyncio.wait_for(
            asyncio.wrap_future(recommender.submit(request)), timeout=settings.recommendation_timeout_s
        )
    except TimeoutError as error:
        raise unavailable("The recommender is busy or still loading the model.", RETRY_AFTER_S) from error
    except NoModelError as error:
        raise unavailable(str(error), RETRY_AFTER_S) from error
    except Exception as error:
        log.error("recommendation failed", extra={"error": f"{type(error).__name__}: {error}"})
        raise unavailable("The recommender is unavailable.", RETRY_AFTER_S) from error
    elapsed = time.perf_counter() - started
    RECOMMENDATION_SECONDS.labels(context.value).observe(elapsed)
    response.headers["Server-Timing"] = f"recommend;dur={elapsed * 1e3:.1f}"  # queue + ranking, in this process
    decision = answer.decision
    return Recommendations(
        decision_id=decision.decision_id,
        context=context,
        customer_id=decision.customer_id,
        model_version=decision.model_version,
        variant=decision.variant,
        items=[PricedCartItem.model_validate(item, from_attributes=True) for item in answer.items],
        offers=[RecommendedOffer.model_validate(offer.model_dump()) for offer in decision.offers],
        no_offer_reason=decision.no_offer_reason,
    )
