"""Signed e-mail links: click-through (`/r/`), open pixel (`/o/`), unsubscribe (`/unsubscribe/`).

No API key: the signed token is the credential (`services.links`). A malformed, forged, altered or
expired token gets a 400 page and changes nothing. The feedback id of a link event is derived from
the token, so the same link clicked or opened twice is one fact downstream. The shopper is never
blocked by the feedback topic: if publishing fails it is logged and the redirect, pixel or
unsubscribe still happens (the unsubscribe is recorded in the preference store first).
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from services.api.deps import InboxDep, PreferencesDep, PublisherDep, SettingsDep
from services.api.feedback import FeedbackPublisher, FeedbackPublishError
from services.links import LinkClaim, LinkError, verify_link
from xsell.offers import Channel, FeedbackEvent, FeedbackType, feedback_id_for

log = logging.getLogger(__name__)

router = APIRouter(tags=["links"])

Token = Annotated[str, Path(min_length=1, max_length=1024)]

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="/favicon.ico" type="image/svg+xml"><title>{title}</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto;">
<h1>{title}</h1><p>{text}</p></body></html>"""
INVALID = PAGE.format(title="This link is not valid", text="It may have expired or been altered. Nothing was changed.")
UNSUBSCRIBED = PAGE.format(title="You are unsubscribed", text="You will not receive offer e-mails from us any more.")
# What a refused token gets: the INVALID page (the pixel: no body). A schema-valid token is not a valid
# one (it must carry the link secret's signature), so the 400 is part of every link's contract.
INVALID_PAGE: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "Invalid, altered or expired link: a page saying so; nothing changed.",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
}
INVALID_PIXEL: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid, altered or expired link (no body); nothing recorded."}
}


def _verify(secret: str, token: str, action: str) -> LinkClaim | None:
    """The claim of a valid token, or None (the reason is logged, never the token)."""
    try:
        return verify_link(secret, token, action)
    except LinkError as error:
        log.warning("link refused", extra={"action": action, "reason": str(error)})
        return None


def _publish(publisher: FeedbackPublisher, claim: LinkClaim, kind: FeedbackType, token: str) -> None:
    """Publish the link's feedback fact; a failure is logged, not shown to the shopper."""
    # An open pixel is per message: its token's offer slot carries the decision id (services.delivery).
    opened = kind is FeedbackType.EMAIL_OPENED
    event = FeedbackEvent(
        feedback_id=feedback_id_for(kind.value, token),
        type=kind,
        offer_id=None if opened else claim.offer_id,
        customer_id=claim.customer_id,
        channel=Channel.EMAIL,
        occurred_at=datetime.now(UTC),
        details={"decision_id": claim.offer_id} if opened and claim.offer_id else {},
    )
    try:
        publisher.publish(event)
    except FeedbackPublishError:
        log.error("link feedback lost", extra={"type": kind.value})


@router.get(
    "/r/{token}",
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
    responses=INVALID_PAGE,
)
def read_click_link(token: Token, settings: SettingsDep, inbox: InboxDep, publisher: PublisherDep) -> Response:
    """Record an e-mail click and redirect to the offered product's page in the demo shop."""
    claim = _verify(settings.link_secret, token, "click")
    if claim is None:
        return HTMLResponse(INVALID, status_code=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
    _publish(publisher, claim, FeedbackType.EMAIL_CLICKED, token)
    offer = inbox.offer(claim.offer_id) if claim.offer_id else None
    customer = quote(claim.customer_id, safe="")
    target = (
        f"/demo/products/{quote(offer.product_id, safe='')}?customer_id={customer}&offer_id={quote(offer.offer_id, safe='')}"
        if offer is not None and offer.customer_id == claim.customer_id
        else f"/demo?customer_id={customer}"  # an e-mail-only offer is not in the inbox store
    )
    return RedirectResponse(target, status_code=status.HTTP_302_FOUND, headers=NO_STORE)


@router.get(
    "/o/{token}.gif",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}}, **INVALID_PIXEL},
)
def read_open_pixel(token: Token, settings: SettingsDep, publisher: PublisherDep) -> Response:
    """Record an e-mail open and return a transparent 1x1 GIF."""
    claim = _verify(settings.link_secret, token, "open")
    if claim is None:
        return Response(status_code=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
    _publish(publisher, claim, FeedbackType.EMAIL_OPENED, token)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


def _unsubscribe(token: str, settings: SettingsDep, preferences: PreferencesDep, publisher: PublisherDep) -> bool:
    """Unsubscribe the customer of a valid token (idempotent); False for an invalid one, which changes nothing."""
    claim = _verify(settings.link_secret, token, "unsubscribe")
    if claim is None:
        return False
    new = preferences.unsubscribe(claim.customer_id, source="email_link")
    _publish(publisher, claim, FeedbackType.UNSUBSCRIBED, token)
    log.info("unsubscribed", extra={"new": new})
    return True


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, responses=INVALID_PAGE)
def read_unsubscribe_link(
    token: Token, settings: SettingsDep, preferences: PreferencesDep, publisher: PublisherDep
) -> HTMLResponse:
    """Unsubscribe the link's customer from offer e-mails (idempotent) and confirm it."""
    if not _unsubscribe(token, settings, preferences, publisher):
        return HTMLResponse(INVALID, status_code=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
    return HTMLResponse(UNSUBSCRIBED, headers=NO_STORE)


@router.post(
    "/unsubscribe/{token}",
    response_class=Response,
    status_code=status.HTTP_204_NO_CONTENT,
    responses=INVALID_PAGE,
)
def create_unsubscribe(
    token: Token, settings: SettingsDep, preferences: PreferencesDep, publisher: PublisherDep
) -> Response:
    """One-click unsubscribe (RFC 8058): the POST a mail client sends to the `List-Unsubscribe` URL,
    body `List-Unsubscribe=One-Click` (form-encoded, not needed: the token is the credential).
    Same effect as the GET link, answered 204 with no page, no confirmation step and no redirect."""
    if not _unsubscribe(token, settings, preferences, publisher):
        return HTMLResponse(INVALID, status_code=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)
