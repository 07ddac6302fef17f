"""The demo shop's pages as the server renders them: the cart page, a product page the inbox knows
nothing of (the page's script asks the API; that needs a model, so the browser test,
tests/integration/test_demo_shop_browser.py, checks what it shows), and one nonce'd script per page."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from services.inbox.store import InboxStore
from tests.services.api.factories import deliver, make_decision
from xsell.settings import Settings

HOSTILE = '"><script>alert(1)</script>'


def script_nonces(html: str) -> list[str]:
    """The nonce of every script tag of a page (an empty string for a script without one)."""
    return [nonce or "" for nonce in re.findall(r'<script(?: nonce="([^"]*)")?[^>]*>', html)]


def test_the_cart_page_renders_its_root_and_one_script_allowed_by_its_policy(client: TestClient) -> None:
    page = client.get("/demo/cart", params={"customer_id": "C1"})

    assert page.status_code == 200
    assert 'id="cart-root"' in page.text and 'id="place-order"' in page.text and 'id="follow-ups"' in page.text
    assert 'href="/demo/cart?customer_id=C1"' in page.text and 'id="cart-count"' in page.text
    assert 'id="anonymous-note"' not in page.text
    [nonce] = script_nonces(page.text)
    policy = page.headers["content-security-policy"]
    assert nonce and f"script-src 'nonce-{nonce}'" in policy and "connect-src 'self'" in policy
    assert page.headers["cache-control"] == "no-store"  # the page holds the API key
    assert 'const API_KEY = "test-key";' in page.text
    assert not re.search(r"\son[a-z]+=", page.text)  # no inline event handler: the policy forbids them


def test_an_anonymous_cart_says_it_gets_no_follow_ups_and_ids_are_escaped(client: TestClient) -> None:
    anonymous = client.get("/demo/cart")
    hostile = client.get("/demo/cart", params={"customer_id": HOSTILE})

    assert anonymous.status_code == hostile.status_code == 200
    assert 'id="anonymous-note"' in anonymous.text and "no follow-up offers" in anonymous.text
    assert "<script>alert(1)" not in hostile.text and "&#34;&gt;&lt;script&gt;alert(1)" in hostile.text
    assert len(script_nonces(hostile.text)) == 1


def test_a_product_the_inbox_does_not_know_gets_a_page_that_asks_the_api(client: TestClient) -> None:
    page = client.get("/demo/products/22423", params={"customer_id": "C1"})

    assert page.status_code == 200  # the page's script takes the name and price from the API's answer
    assert 'data-product-id="22423" data-known="false"' in page.text
    assert 'id="goes-well-with"' in page.text and 'id="upgrade-to"' in page.text
    assert '"product_page"' in page.text and "/v1/recommendations" in page.text


def test_a_product_the_inbox_knows_shows_its_offer_and_reports_the_conversion(
    client: TestClient, settings: Settings, store: InboxStore
) -> None:
    decision = make_decision("O1")
    deliver(settings, store, decision)
    offer = decision.offers[0]

    page = client.get(f"/demo/products/{offer.product_id}", params={"customer_id": "C1", "offer_id": offer.offer_id})

    assert page.status_code == 200
    assert 'data-known="true"' in page.text and "ITEM P1" in page.text and "£5.95" in page.text
    assert f'id="buy" type="button" data-offer-id="{offer.offer_id}"' in page.text
    other = client.get(f"/demo/products/{offer.product_id}", params={"customer_id": "C2", "offer_id": offer.offer_id})
    assert "data-offer-id" not in other.text.split('id="goes-well-with"')[0]  # not their offer: no conversion
