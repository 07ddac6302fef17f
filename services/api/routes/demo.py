"""A small demo shop: `/demo?customer_id=…` shows the customer's offers as product cards.

The page plays the shop: it renders the offers server-side from the inbox store and reports
impressions (on load), clicks, dismissals and conversions through the real `/v1` API with fetch.
Product pages (`/demo/products/{product_id}`) are where offer clicks and e-mail links land.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import HTMLResponse

from services.api.deps import InboxDep, SettingsDep, TemplatesDep
from xsell.offers import offer_groups

router = APIRouter(prefix="/demo", tags=["demo"], include_in_schema=False)

CustomerQuery = Annotated[str | None, Query(max_length=128)]


@router.get("", response_class=HTMLResponse)
def read_demo_shop(
    request: Request, settings: SettingsDep, inbox: InboxDep, templates: TemplatesDep, customer_id: CustomerQuery = None
) -> HTMLResponse:
    """The shop's page for one customer: their active offers as product cards, the parts of a
    "complete the set" bundle on one card."""
    offers = inbox.offers_for(customer_id, limit=12) if customer_id else []
    return templates.TemplateResponse(
        request,
        "demo.html",
        {
            "customer_id": customer_id,
            "offers": offers,
            "groups": offer_groups(offers),
            "product": None,
            # The demo page stands in for the shop's backend, so the server renders the API key into
            # it. A real shop keeps the key on its server and calls /v1 from there.
            "api_key": settings.api_key,
            "page_view_id": str(uuid.uuid4()),
        },
    )


@router.get("/products/{product_id}", response_class=HTMLResponse)
def read_demo_product(
    request: Request,
    inbox: InboxDep,
    settings: SettingsDep,
    templates: TemplatesDep,
    product_id: Annotated[str, Path(min_length=1, max_length=128)],
    customer_id: CustomerQuery = None,
    offer_id: Annotated[str | None, Query(max_length=128)] = None,
) -> HTMLResponse:
    """A product page; with the customer's own offer id it can report the conversion."""
    offer = inbox.offer(offer_id) if offer_id else None
    if offer is None or offer.customer_id != customer_id or offer.product_id != product_id:
        offer = None
    product = offer or inbox.latest_offer_of_product(product_id)
    return templates.TemplateResponse(
        request,
        "demo.html",
        {
            "customer_id": customer_id,
            "offers": [],
            "product": product,
            "product_id": product_id,
            "offer": offer,
            "api_key": settings.api_key,  # see read_demo_shop: the page plays the shop's backend
            "page_view_id": str(uuid.uuid4()),
        },
        status_code=status.HTTP_200_OK if product else status.HTTP_404_NOT_FOUND,
    )
