"""A small demo shop that uses the `/v1` API the way a shop's backend would.

- `/demo?customer_id=…` shows the customer's follow-up offers as product cards, rendered
  server-side from the inbox store; the page reports impressions, clicks and dismissals.
- `/demo/products/{product_id}` is a product page (where offer clicks and e-mail links land). Its
  script asks `POST /v1/recommendations` (context `product_page`) for what goes well with the
  product and what it upgrades to; with the customer's own `offer_id` it reports the conversion.
  When the inbox knows nothing of the product, the answer's first item gives its name and price.
- `/demo/cart` is the cart: it lives in the browser's localStorage. The page asks for offers for
  the cart and at checkout, places the order as one purchase event (`POST /v1/purchases`) and
  polls `GET /v1/customers/{customer_id}/offers` for the follow-up offers of the order.

Every page has one inline script, allowed by the nonce of its Content-Security-Policy (as the
dashboard's pages); the script calls only this origin.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from services.api.deps import InboxDep, SettingsDep, TemplatesDep
from xsell.offers import offer_groups
from xsell.settings import Settings

router = APIRouter(prefix="/demo", tags=["demo"], include_in_schema=False)

CustomerQuery = Annotated[str | None, Query(max_length=128)]

POLICY = (
    "default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def page_headers(nonce: str) -> dict[str, str]:
    """No caching (the page holds the API key), no framing, only the page's own script."""
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": POLICY.format(nonce=nonce),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def render(
    request: Request,
    templates: Jinja2Templates,
    settings: Settings,
    template: str,
    customer_id: str | None,
    context: dict[str, Any],
) -> HTMLResponse:
    """A demo page with what every page needs: the customer, the API key, a page-view id, the nonce."""
    nonce = secrets.token_urlsafe(16)
    return templates.TemplateResponse(
        request,
        template,
        {
            "customer_id": customer_id,
            # The demo page stands in for the shop's backend, so the server renders the API key into
            # it. A real shop keeps the key on its server and calls /v1 from there.
            "api_key": settings.api_key,
            "page_view_id": str(uuid.uuid4()),
            "nonce": nonce,
            **context,
        },
        headers=page_headers(nonce),
    )


@router.get("", response_class=HTMLResponse)
def read_demo_shop(
    request: Request, settings: SettingsDep, inbox: InboxDep, templates: TemplatesDep, customer_id: CustomerQuery = None
) -> HTMLResponse:
    """The shop's page for one customer: their active offers as product cards, the parts of a
    "complete the set" bundle on one card."""
    offers = inbox.offers_for(customer_id, limit=12) if customer_id else []
    context = {"offers": offers, "groups": offer_groups(offers), "page": "shop"}
    return render(request, templates, settings, "demo.html", customer_id, context)


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
    """A product page; with the customer's own offer id it reports the conversion. The inbox's
    latest offer of the product gives its name and price; without one, the page's script takes
    them from the API's answer (and says "Product not found" when the API knows nothing of it)."""
    offer = inbox.offer(offer_id) if offer_id else None
    if offer is None or offer.customer_id != customer_id or offer.product_id != product_id:
        offer = None
    product = offer or inbox.latest_offer_of_product(product_id)
    context = {"product": product, "product_id": product_id, "offer": offer, "page": "product"}
    return render(request, templates, settings, "demo.html", customer_id, context)


@router.get("/cart", response_class=HTMLResponse)
def read_demo_cart(
    request: Request, settings: SettingsDep, templates: TemplatesDep, customer_id: CustomerQuery = None
) -> HTMLResponse:
    """The cart (kept in the browser), its offers, the checkout step and the order's follow-ups."""
    return render(request, templates, settings, "demo_cart.html", customer_id, {"page": "cart"})
