"""The API with a real SQLite store: auth, listing, cross-customer 404s, feedback, signed links, demo.

Feedback goes to `RecordingPublisher`, a second implementation of the `FeedbackPublisher` protocol
that keeps events in a list; tests/integration/test_api.py runs the same app against Kafka.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from services.inbox.store import InboxStore, OfferStatus
from services.links import sign_link
from services.preferences import PreferenceStore
from tests.services.api.factories import RecordingPublisher, deliver, make_decision, status_of
from xsell.offers import Channel, FeedbackType
from xsell.settings import Settings

KEY = {"X-API-Key": "test-key"}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}  # the form body of an RFC 8058 one-click POST


def test_read_customer_offers_without_or_with_wrong_key_is_401(client: TestClient) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
        response = client.get("/v1/customers/C1/offers", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Missing or invalid API key."}
    response = client.post("/v1/offers/x/events", json={"customer_id": "C1", "type": "click"})
    assert response.status_code == 401


def test_read_customer_offers_lists_active_in_app_offers_newest_first(
    client: TestClient, settings: Settings, store: InboxStore
) -> None:
    old, new = make_decision("O1", minutes=0), make_decision("O2", products=("P3",), minutes=5)
    email_only = make_decision("O3", channels=(Channel.EMAIL,), minutes=9)
    deliver(settings, store, old, new, email_only, make_decision("O4", customer_id="C2"))
    deliver(settings, store, old)  # redelivery stores nothing twice

    response = client.get("/v1/customers/C1/offers", headers=KEY)

    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == "C1" and body["count"] == 3
    assert [o["offer_id"] for o in body["offers"]] == [
        new.offers[0].offer_id,
        old.offers[0].offer_id,
        old.offers[1].offer_id,
    ]
    first = body["offers"][0]
    assert first["product_id"] == "P3" and first["name"] == "ITEM P3" and first["offer_type"] == "cross_sell"
    assert first["status"] == "active" and first["model_version"] == "xsell-ranker/3"
    assert client.get("/v1/customers/C1/offers?limit=1", headers=KEY).json()["count"] == 1
    assert client.get("/v1/customers/nobody/offers", headers=KEY).json() == {
        "customer_id": "nobody",
        "count": 0,
        "offers": [],
    }


def test_create_offer_event_click_is_accepted_and_published_once_per_idempotency_key(
    client: TestClient, settings: Settings, store: InboxStore, publisher: RecordingPublisher
) -> None:
    decision = make_decision("O1")
    deliver(settings, store, decision)
    offer_id = decision.offers[0].offer_id
    headers = {**KEY, "Idempotency-Key": "req-1"}

    first = client.post(f"/v1/offers/{offer_id}/events", headers=headers, json={"customer_id": "C1", "type": "click"})
    retry = client.post(f"/v1/offers/{offer_id}/events", headers=headers, json={"customer_id": "C1", "type": "click"})

    assert first.status_code == 202
    assert first.json()["offer_id"] == offer_id and first.json()["type"] == "click"
    assert first.json()["offer_status"] == "active"
    assert retry.status_code == 202 and retry.json()["feedback_id"] == first.json()["feedback_id"]
    event = publisher.events[0]
    assert (event.type, event.offer_id, event.customer_id, event.channel) == (
        FeedbackType.CLICK,
        offer_id,
        "C1",
        Channel.IN_APP,
    )
    assert event.feedback_id == first.json()["feedback_id"]
    assert event.details == {"decision_id": decision.decision_id, "product_id": "P1"}


def test_create_offer_event_other_customers_offer_is_404_like_unknown_offer(
    client: TestClient, settings: Settings, store: InboxStore, publisher: RecordingPublisher
) -> None:
    decision = make_decision("O1", customer_id="C2")
    deliver(settings, store, decision)

    foreign = client.post(
        f"/v1/offers/{decision.offers[0].offer_id}/events", headers=KEY, json={"customer_id": "C1", "type": "dismiss"}
    )
    unknown = client.post("/v1/offers/no-such-offer/events", headers=KEY, json={"customer_id": "C1", "type": "dismiss"})

    assert foreign.status_code == 404 and unknown.status_code == 404
    assert foreign.json() == unknown.json() == {"detail": "Offer not found."}
    assert publisher.events == []
    assert status_of(store, decision.offers[0].offer_id) is OfferStatus.ACTIVE


def test_create_offer_event_dismiss_and_convert_update_status(
    client: TestClient, settings: Settings, store: InboxStore, publisher: RecordingPublisher
) -> None:
    decision = make_decision("O1")
    deliver(settings, store, decision)
    dismissed, converted = (item.offer_id for item in decision.offers)

    response = client.post(
        f"/v1/offers/{dismissed}/events",
        headers=KEY,
        json={"customer_id": "C1", "type": "dismiss", "occurred_at": "2011-05-01T13:00:00+01:00"},
    )
    assert response.status_code == 202 and response.json()["offer_status"] == "dismissed"
    response = client.post(f"/v1/offers/{converted}/events", headers=KEY, json={"customer_id": "C1", "type": "convert"})
    assert response.status_code == 202 and response.json()["offer_status"] == "converted"
    deliver(settings, store, decision)  # a replay does not bring them back

    assert client.get("/v1/customers/C1/offers", headers=KEY).json()["offers"] == []
    assert publisher.events[0].occurred_at == datetime(2011, 5, 1, 12, 0, tzinfo=UTC)
    assert [e.type for e in publisher.events] == [FeedbackType.DISMISS, FeedbackType.CONVERT]


def test_create_offer_event_invalid_body_is_422(client: TestClient, settings: Settings, store: InboxStore) -> None:
    decision = make_decision("O1")
    deliver(settings, store, decision)
    url = f"/v1/offers/{decision.offers[0].offer_id}/events"
    for body in (
        {"customer_id": "C1", "type": "email_sent"},
        {"customer_id": "C1", "type": "click", "extra": 1},
        {"customer_id": "C1", "type": "click", "occurred_at": "2011-05-01T13:00:00"},
    ):
        response = client.post(url, headers=KEY, json=body)
        assert response.status_code == 422


def test_create_offer_event_broker_down_is_503_and_status_unchanged(
    client: TestClient, settings: Settings, store: InboxStore, publisher: RecordingPublisher
) -> None:
    decision = make_decision("O1")
    deliver(settings, store, decision)
    publisher.fail = True

    response = client.post(
        f"/v1/offers/{decision.offers[0].offer_id}/events", headers=KEY, json={"customer_id": "C1", "type": "dismiss"}
    )

    assert response.status_code == 503
    assert status_of(store, decision.offers[0].offer_id) is OfferStatus.ACTIVE


def test_read_click_link_records_click_and_redirects_to_product(
    client: TestClient, settings: Settings, store: InboxStore, publisher: RecordingPublisher
) -> None:
    decision = make_decision("O1")
    deliver(settings, store, decision)
    offer_id = decision.offers[0].offer_id
    token = sign_link(settings.link_secret, "click", "C1", offer_id, ttl_s=3600)

    response = client.get(f"/r/{token}", follow_redirects=False)

    assert response.status_code == 302
    assert response.headers["location"] == f"/demo/products/P1?customer_id=C1&offer_id={offer_id}"
    assert [(e.type, e.offer_id, e.customer_id, e.channel) for e in publisher.events] == [
        (FeedbackType.EMAIL_CLICKED, offer_id, "C1", Channel.EMAIL)
    ]
    page = client.get(response.headers["location"])
    assert page.status_code == 200 and "ITEM P1" in page.text and 'id="buy"' in page.text


def test_read_open_pixel_records_open_and_returns_gif(
    client: TestClient, settings: Settings, publisher: RecordingPublisher
) -> None:
    token = sign_link(settings.link_secret, "open", "C1", "decision-9", ttl_s=3600)  # a pixel is per message

    response = client.get(f"/o/{token}.gif")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif" and response.content.startswith(b"GIF89a")
    assert [(e.type, e.offer_id, e.customer_id, e.details) for e in publisher.events] == [
        (FeedbackType.EMAIL_OPENED, None, "C1", {"decision_id": "decision-9"})
    ]


def test_read_unsubscribe_link_records_unsubscribe(
    client: TestClient, settings: Settings, publisher: RecordingPublisher
) -> None:
    token = sign_link(settings.link_secret, "unsubscribe", "C7", None, ttl_s=3600)

    response = client.get(f"/unsubscribe/{token}")
    again = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)  # one-click POST, same link: idempotent

    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert again.status_code == 204
    assert PreferenceStore(settings.db_url).unsubscribed(["C7", "C8"]) == {"C7"}
    assert {(e.type, e.customer_id, e.offer_id) for e in publisher.events} == {(FeedbackType.UNSUBSCRIBED, "C7", None)}
    assert len({e.feedback_id for e in publisher.events}) == 1


def test_one_click_post_unsubscribes_with_no_page_and_no_confirmation_step(
    client: TestClient, settings: Settings, publisher: RecordingPublisher
) -> None:
    token = sign_link(settings.link_secret, "unsubscribe", "C7", None, ttl_s=3600)

    response = client.post(f"/unsubscribe/{token}", data=ONE_CLICK, follow_redirects=False)  # as RFC 8058 sends it

    assert response.status_code == 204 and response.content == b""
    assert "location" not in response.headers and response.headers["cache-control"] == "no-store"
    assert PreferenceStore(settings.db_url).unsubscribed(["C7", "C8"]) == {"C7"}
    assert [(e.type, e.customer_id, e.offer_id, e.channel) for e in publisher.events] == [
        (FeedbackType.UNSUBSCRIBED, "C7", None, Channel.EMAIL)
    ]


@pytest.mark.parametrize(
    ("path", "action"), [("/r/{}", "click"), ("/o/{}.gif", "open"), ("/unsubscribe/{}", "unsubscribe")]
)
def test_read_link_forged_expired_or_wrong_action_is_refused_and_changes_nothing(
    client: TestClient, settings: Settings, publisher: RecordingPublisher, path: str, action: str
) -> None:
    valid = sign_link(settings.link_secret, action, "C1", "offer-1", ttl_s=3600)
    other_action = "unsubscribe" if action != "unsubscribe" else "click"
    tokens = {
        "forged": sign_link("not-the-secret", action, "C1", "offer-1", ttl_s=3600),
        "altered": valid[:-2] + ("AA" if not valid.endswith("AA") else "BB"),
        "expired": sign_link(settings.link_secret, action, "C1", "offer-1", ttl_s=60, now=time.time() - 3600),
        "wrong action": sign_link(settings.link_secret, other_action, "C1", "offer-1", ttl_s=3600),
        "garbage": "garbage",
    }
    for case, token in tokens.items():
        response = client.get(path.format(token), follow_redirects=False)
        assert response.status_code == 400, case
        assert "location" not in response.headers
    assert publisher.events == []
    assert PreferenceStore(settings.db_url).unsubscribed(["C1"]) == set()


def test_read_demo_shop_lists_offers_escaped_with_embedded_key(
    client: TestClient, settings: Settings, store: InboxStore
) -> None:
    deliver(settings, store, make_decision("O1", name="<script>alert(1)</script> MUG"))

    response = client.get("/demo", params={"customer_id": "C1"})

    assert response.status_code == 200
    assert response.text.count('class="card" data-offer-id=') == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt; MUG" in response.text
    assert "<script>alert(1)" not in response.text
    assert 'const API_KEY = "test-key";' in response.text
    assert "up-sell" in response.text and "£6.95" in response.text
    # a product the inbox does not know: the page asks the API for it (test_demo_shop.py)
    assert client.get("/demo/products/unknown").status_code == 200


def test_a_bundle_is_listed_per_part_and_shown_as_one_card(
    client: TestClient, settings: Settings, store: InboxStore
) -> None:
    plain = make_decision("O1", products=("P1",))
    parts = tuple(
        offer.model_copy(update={"bundle_id": "bundle-1", "bundle_price": 9.0, "reason": "Complete the set with MUG"})
        for offer in make_decision("O2", products=("P2", "P3"), minutes=5).offers
    )  # 5.95 + 6.95 = 12.90 without the discount
    deliver(settings, store, plain, make_decision("O2", minutes=5).model_copy(update={"offers": parts}))

    listed = client.get("/v1/customers/C1/offers", headers=KEY).json()["offers"]
    assert [(o["product_id"], o["bundle_id"], o["bundle_price"]) for o in listed] == [
        ("P2", "bundle-1", 9.0),
        ("P3", "bundle-1", 9.0),
        ("P1", None, None),
    ]

    page = client.get("/demo", params={"customer_id": "C1"}).text
    assert page.count('class="card bundle"') == 1 and page.count('class="card" data-offer-id=') == 1
    assert page.count('class="part" data-offer-id=') == 2
    assert f'data-offer-id="{parts[0].offer_id}"' in page and f'data-offer-id="{parts[1].offer_id}"' in page
    assert "All 2 for £9.00" in page and "you save £3.90" in page


def test_read_health_and_openapi(client: TestClient) -> None:
    health = client.get("/healthz")
    schema = client.get("/openapi.json")

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert schema.status_code == 200
    assert "/v1/customers/{customer_id}/offers" in schema.json()["paths"]
    assert "APIKeyHeader" in schema.json()["components"]["securitySchemes"]
