"""The API and the inbox consumer against the real broker: a decision produced to `offers` is listed
by the API once the consumer caught up, and a POSTed click lands on `offer-feedback`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from kafka import KafkaProducer

from services.api.app import create_app
from services.inbox.consumer import InboxService
from tests.services.api.factories import make_decision
from xsell.offers import Channel, FeedbackEvent, FeedbackType
from xsell.settings import Settings


def test_decision_on_offers_is_listed_and_click_lands_on_offer_feedback(
    kafka_settings: Settings, read_topic: Callable[..., list], tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path / 'api.db'}",
            "inbox_group": f"inbox-{kafka_settings.topic_offers}",
            "api_key": "integration-key",
        }
    )
    shown, email_only = (
        make_decision("I1", customer_id="C42"),
        make_decision("I2", customer_id="C42", channels=(Channel.EMAIL,)),
    )
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for decision in (shown, email_only, shown):  # the repeat stands for a redelivery
        producer.send(settings.topic_offers, key=decision.key(), value=decision.to_bytes())
    producer.send(settings.topic_offers, key=b"C42", value=b"{not json")
    producer.flush()
    producer.close()

    summary = InboxService(settings, until_caught_up=True).run()
    assert (summary.records, summary.decisions_stored, summary.not_in_app, summary.invalid) == (4, 2, 1, 1)
    assert summary.offers_new == 2

    headers = {"X-API-Key": "integration-key", "Idempotency-Key": "click-1"}
    with TestClient(create_app(settings)) as client:
        listed = client.get("/v1/customers/C42/offers", headers=headers)
        offer_id = shown.offers[0].offer_id
        clicked = client.post(
            f"/v1/offers/{offer_id}/events", headers=headers, json={"customer_id": "C42", "type": "click"}
        )

    assert listed.status_code == 200
    assert [o["offer_id"] for o in listed.json()["offers"]] == [item.offer_id for item in shown.offers]
    assert clicked.status_code == 202
    records = read_topic(settings.topic_offer_feedback, expected=1)
    assert len(records) == 1
    assert records[0].key == offer_id.encode()
    event = FeedbackEvent.model_validate(json.loads(records[0].value))
    assert (event.type, event.offer_id, event.customer_id, event.channel) == (
        FeedbackType.CLICK,
        offer_id,
        "C42",
        Channel.IN_APP,
    )
    assert event.feedback_id == clicked.json()["feedback_id"]
