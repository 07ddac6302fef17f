"""Reading consumed records: a valid one becomes its model; an invalid one is None and one warning
on the service's own logger with the record's position, never its content. Producing: acks=all and
idempotent for every service, connecting as the Kafka security settings say."""

from __future__ import annotations

import logging

import pytest

from services.messaging import durable_producer, parse_record
from tests.conftest import FakeRecord
from tests.services.feedback.factories import T0, decision
from xsell.kafka_security import client_security
from xsell.offers import OfferDecision, OfferType
from xsell.settings import load_settings


def test_a_valid_record_is_its_model() -> None:
    made = decision("A1", "C1", T0, ("P1", OfferType.CROSS_SELL))
    log = logging.getLogger("tests.messaging")
    assert parse_record(FakeRecord(made.to_bytes(), topic="offers"), OfferDecision, log, "skipped") == made


@pytest.mark.parametrize("value", [b'{"customer_email": "someone@example.com"}', b"{not json", None])
def test_an_invalid_record_is_none_and_a_warning_with_its_position(value, caplog) -> None:
    record = FakeRecord(value, topic="offers", partition=2, offset=41)
    with caplog.at_level(logging.WARNING, logger="tests.messaging"):
        parsed = parse_record(record, OfferDecision, logging.getLogger("tests.messaging"), "skipped", reason="bad")
    assert parsed is None
    [warning] = caplog.records
    assert (warning.name, warning.getMessage(), warning.reason) == ("tests.messaging", "skipped", "bad")
    assert (warning.topic, warning.partition, warning.offset) == ("offers", 2, 41)
    assert warning.errors >= 1
    assert "someone@example.com" not in repr(warning.__dict__)


def test_every_producer_waits_for_all_replicas_and_is_idempotent(monkeypatch, tmp_path) -> None:
    made: list[dict[str, object]] = []
    monkeypatch.setattr("services.messaging.KafkaProducer", lambda **config: made.append(config))
    settings = load_settings(home=tmp_path)
    durable_producer(settings, "xsell-test")
    durable_producer(settings, "xsell-api", retries=5, linger_ms=2)
    base = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        **client_security(settings),
    }
    assert made == [
        {**base, "client_id": "xsell-test", "retries": 10},
        {**base, "client_id": "xsell-api", "retries": 5, "linger_ms": 2},
    ]
