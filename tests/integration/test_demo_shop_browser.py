"""The demo shop in a real headless Chromium, against a ranker trained on the shipped sample.

The real broker, the offer service and the inbox consumer run in threads, the API under uvicorn on
a free port. A sample customer opens a sample product's page: its script asks the checkout API for
what goes well with it (the inbox knows nothing of the product, so the name and price come from the
API's answer too). The product and one offer go into the cart (localStorage); the cart page shows
the cart's offers and total, the checkout step its offers, and "Place order" sends the cart as one
purchase event. The offer service decides that purchase, the inbox stores its offers, and the page
shows them under "Because you just ordered" once its polling finds them; no console error on the way.
A screenshot of the cart page is kept under the test's tmp folder.

Without Chromium the test is skipped, unless CI is set: then it fails (see tests/integration/chromium.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.kafka.broker import free_port
from infra.kafka.topics import ensure_topics
from services.api.app import create_app
from services.inbox.consumer import InboxService
from services.offers.service import OfferService
from tests.integration.api_server import serving
from tests.integration.chromium import Chromium, chromium_or_skip
from tests.integration.test_offer_pipeline import SAMPLE, running
from tests.streams import own_groups, own_topics
from training import commands
from xsell.events import PurchaseEvent
from xsell.offers import decision_id_for
from xsell.settings import Settings

CUSTOMER = "14769"  # a customer of the sample
PRODUCT = "22423"  # REGENCY CAKESTAND 3 TIER
FOLLOW_UP_S = 70.0  # the page polls for ~60 s


@pytest.fixture(scope="module")
def trained(broker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings on the session broker whose home holds a ranker trained on the sample (the champion)."""
    home = tmp_path_factory.mktemp("demo-shop-home")
    settings = broker_settings.model_copy(update={"home": home, "log_level": "WARNING"})
    summary = commands.train(settings, SAMPLE)
    assert summary["champion"] is True
    return settings


@pytest.fixture
def settings(trained: Settings, tmp_path: Path) -> Settings:
    """The trained home with this test's topics, groups, database, API port and key."""
    suffix = f"demo-shop-{uuid.uuid4().hex[:8]}"
    settings = trained.model_copy(
        update={
            **own_topics(suffix),
            **own_groups(suffix, "offer", "inbox"),
            "database_url": f"sqlite:///{tmp_path / 'xsell.db'}",
            "api_port": free_port(),
            "api_key": "demo-shop-test-key",
            "link_secret": "demo-shop-test-secret",
            "recommendation_timeout_s": 60.0,  # the first answer may wait for the model to load
            "free_delivery_threshold": 40.0,
        }
    )
    ensure_topics(settings)
    return settings


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    """The API served by uvicorn in a thread, its recommender warming up; yields its base URL."""
    with serving(create_app(settings, warm=True), settings.api_port) as url:
        yield url


def page_state(browser: Chromium, selector: str) -> dict:
    """The offer cards of a section: their product ids, types, reasons, prices and highlight."""
    return json.loads(
        browser.evaluate(
            f"""JSON.stringify([...document.querySelectorAll({json.dumps(selector)} + " .card")].map(card => ({{
              product_id: card.dataset.productId,
              offer_id: card.dataset.offerId,
              offer_type: card.dataset.offerType,
              name: card.querySelector("h3").textContent,
              reason: card.querySelector(".reason").textContent,
              price: card.querySelector(".price")?.textContent,
              free_delivery: card.classList.contains("free-delivery"),
              href: card.querySelector("a.view").getAttribute("href"),
            }})))"""
        )
    )


def test_a_customer_shops_checks_out_and_sees_the_follow_ups_of_the_order(
    settings: Settings, api: str, tmp_path: Path, read_topic: Callable[..., list]
) -> None:
    chromium = chromium_or_skip()
    with running(OfferService(settings), InboxService(settings)), Chromium(chromium, tmp_path / "profile") as browser:
        # the product page: only the API knows the product; it asks for offers and shows two sections
        browser.goto(f"{api}/demo/products/{PRODUCT}?customer_id={CUSTOMER}")
        browser.wait_for("document.body.dataset.state === 'ready'", timeout_s=60)
        assert browser.evaluate("performance.getEntriesByType('navigation')[0].responseStatus") == 200
        assert "CAKESTAND" in browser.evaluate("document.getElementById('product-name').textContent")
        price = browser.evaluate("document.getElementById('product-price').textContent")
        assert price.startswith("£") and float(price[1:]) > 0
        goes_well = page_state(browser, "#goes-well-with")
        upgrades = page_state(browser, "#upgrade-to")
        assert goes_well and {card["offer_type"] for card in goes_well} == {"cross_sell"}
        assert {card["offer_type"] for card in upgrades} <= {"up_sell"}
        assert all(card["href"].startswith("/demo/products/") and card["reason"] for card in goes_well)
        assert PRODUCT not in {card["product_id"] for card in goes_well + upgrades}
        browser.screenshot(tmp_path / "demo-product.png")

        # the product and one offer into the cart
        browser.evaluate("document.getElementById('buy').click()")
        browser.wait_for("document.getElementById('cart-count').dataset.value === '1'")
        browser.evaluate("document.querySelector('#goes-well-with .card .add').click()")
        browser.wait_for("document.getElementById('cart-count').dataset.value === '2'")
        added = goes_well[0]

        # the cart: its lines, total and offers
        browser.goto(f"{api}/demo/cart?customer_id={CUSTOMER}")
        browser.wait_for("document.getElementById('cart-offers').dataset.state === 'ready'", timeout_s=60)
        lines = json.loads(browser.evaluate(f"localStorage.getItem('xsell-demo-cart:{CUSTOMER}')"))
        assert [line["product_id"] for line in lines] == [PRODUCT, added["product_id"]]
        assert lines[0]["unit_price"] == float(price[1:]) and f"£{lines[1]['unit_price']:.2f}" == added["price"]
        total = sum(line["quantity"] * line["unit_price"] for line in lines)
        assert browser.evaluate("document.getElementById('cart-total').dataset.value") == f"{total:.2f}"
        assert browser.evaluate("document.querySelectorAll('#cart-lines tbody tr').length") == 2
        cart_offers = page_state(browser, "#cart-offers")
        assert cart_offers and not {card["product_id"] for card in cart_offers} & {PRODUCT, added["product_id"]}
        assert all(card["free_delivery"] == card["reason"].startswith("Add ") for card in cart_offers)
        shot = browser.screenshot(tmp_path / "demo-cart.png")

        # checkout: its offers, up-sells first as "Upgrade before you pay"
        browser.evaluate("document.getElementById('checkout').click()")
        browser.wait_for("document.getElementById('checkout-upgrades').dataset.state === 'ready'", timeout_s=60)
        at_checkout = page_state(browser, "#checkout-upgrades") + page_state(browser, "#checkout-more")
        assert at_checkout
        assert {card["offer_type"] for card in page_state(browser, "#checkout-upgrades")} <= {"up_sell"}
        assert "up_sell" not in {card["offer_type"] for card in page_state(browser, "#checkout-more")}

        # the order: one purchase event; the cart empties; its follow-ups show up on the page
        ordered_at = datetime.now(UTC)
        browser.evaluate("document.getElementById('place-order').click()")
        browser.wait_for("document.getElementById('order-event-id').textContent !== ''")
        event_id = browser.evaluate("document.getElementById('order-event-id').textContent")
        assert browser.evaluate("document.getElementById('cart-count').dataset.value") == "0"
        browser.wait_for("document.getElementById('follow-ups').dataset.state === 'ready'", timeout_s=FOLLOW_UP_S)
        follow_ups = page_state(browser, "#follow-ups")
        listed = json.loads(
            browser.evaluate(
                f"""fetch('/v1/customers/{CUSTOMER}/offers?limit=50', {{headers: {{'X-API-Key': API_KEY}}}})
                  .then(r => r.json()).then(body => JSON.stringify(body.offers))"""
            )
        )
        browser.screenshot(tmp_path / "demo-follow-ups.png")
        assert browser.errors == []  # no script error, no CSP refusal, no failed load

    [record] = read_topic(settings.topic_purchases, expected=1)
    order = PurchaseEvent.model_validate_json(record.value)
    assert order.event_id == event_id and order.customer_id == CUSTOMER and order.channel == "web"
    assert [(line.product_id, line.quantity, line.unit_price) for line in order.lines] == [
        (line["product_id"], line["quantity"], line["unit_price"]) for line in lines
    ]
    assert abs(order.occurred_at - ordered_at) < timedelta(seconds=30)
    by_id = {offer["offer_id"]: offer for offer in listed}
    assert follow_ups and all(card["offer_id"] in by_id for card in follow_ups)
    assert {by_id[card["offer_id"]]["decision_id"] for card in follow_ups} == {decision_id_for(event_id)}
    assert all("offer_id=" in card["href"] for card in follow_ups)  # the customer's own offers: clicks convert
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"demo shop screenshots: {shot.parent}")
