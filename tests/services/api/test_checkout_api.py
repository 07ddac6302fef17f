"""The checkout API's answers that need no broker or model: every failing field of a bad purchase
gets a 422 and nothing is produced, a key over its rate gets 429, and offers without a model get 503.
(tests/integration/test_offer_pipeline.py runs both routes against the real broker and a trained model.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.ratelimit import RateLimiter
from services.api.routes.purchases import MAX_BATCH_EVENTS
from tests.services.api.factories import RecordingEvents, RecordingPublisher
from xsell.settings import Settings

KEY = {"X-API-Key": "test-key"}
EVENT = {
    "order_id": "O1",
    "occurred_at": "2026-12-06T10:00:00Z",
    "lines": [{"product_id": "P1", "quantity": 1, "unit_price": 2.5}],
}


@pytest.fixture
def events() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture
def checkout(settings: Settings, events: RecordingEvents) -> Iterator[TestClient]:
    with TestClient(create_app(settings, publisher=RecordingPublisher(), events=events)) as client:
        yield client


def test_a_bad_purchase_gets_every_failing_field_and_nothing_is_produced(
    checkout: TestClient, events: RecordingEvents
) -> None:
    bad = {
        "order_id": "",
        "occurred_at": "yesterday",
        "lines": [{"product_id": "P1", "quantity": "2", "unit_price": -1}],
    }
    answer = checkout.post("/v1/purchases", json=bad, headers=KEY)
    assert answer.status_code == 422
    failing = {tuple(error["loc"]) for error in answer.json()["detail"]}
    assert failing >= {  # (pydantic also says the lines tuple came out short)
        ("body", "order_id"),
        ("body", "occurred_at"),
        ("body", "lines", 0, "quantity"),  # "2" is not a number: strict, as ingestion reads Kafka
        ("body", "lines", 0, "unit_price"),
    }
    batch = checkout.post("/v1/purchases/batch", json={"events": [EVENT, {**EVENT, "currency": "pounds"}]}, headers=KEY)
    assert batch.status_code == 422 and [e["loc"] for e in batch.json()["detail"]] == [
        ["body", "events", 1, "currency"]
    ]
    assert events.purchases == []


def test_a_purchase_without_an_event_id_gets_the_id_of_its_order(checkout: TestClient, events: RecordingEvents) -> None:
    first = checkout.post("/v1/purchases", json=EVENT, headers=KEY)
    again = checkout.post("/v1/purchases/batch", json={"events": [EVENT]}, headers=KEY)
    assert first.status_code == again.status_code == 202
    assert first.json()["event_ids"] == again.json()["event_ids"] == [events.purchases[0].event_id]
    assert [e.event_id for e in events.purchases] == [events.purchases[0].event_id] * 2
    own = checkout.post("/v1/purchases", json={**EVENT, "event_id": "shop-42"}, headers=KEY)
    assert own.json()["event_ids"] == ["shop-42"]


def test_a_batch_over_the_contract_size_is_refused(checkout: TestClient, events: RecordingEvents) -> None:
    answer = checkout.post("/v1/purchases/batch", json={"events": [EVENT] * (MAX_BATCH_EVENTS + 1)}, headers=KEY)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "events"]
    assert events.purchases == []


def test_a_key_over_its_rate_gets_429_with_retry_after(settings: Settings, events: RecordingEvents) -> None:
    slow = settings.model_copy(update={"api_rate_per_s": 0.5, "api_rate_burst": 2})
    with TestClient(create_app(slow, publisher=RecordingPublisher(), events=events)) as client:
        answers = [client.post("/v1/purchases", json=EVENT, headers=KEY) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].headers["Retry-After"] == "2"


def test_the_token_bucket_refills_at_its_rate() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=1)
    assert limiter.retry_after("k", now=0.0) == 0
    assert limiter.retry_after("k", now=0.1) == 1  # 0.2 of a token back: wait
    assert limiter.retry_after("other", now=0.1) == 0  # a bucket per key
    assert limiter.retry_after("k", now=0.6) == 0  # 1.0 token back after half a second
    assert RateLimiter(rate_per_s=0.0, burst=1).retry_after("k") == 0  # 0: no limit


def test_offers_before_any_model_is_registered_get_503(checkout: TestClient, tmp_path: Path) -> None:
    body = {"context": "cart", "items": [{"product_id": "P1"}]}
    answer = checkout.post("/v1/recommendations", json=body, headers=KEY)
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
