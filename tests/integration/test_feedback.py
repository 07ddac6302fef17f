"""The feedback loop against the real broker: decisions, feedback and purchases on this test's
topics go through `FeedbackService` into a real SQLite facts database; the report shows the right
counts, and reading everything again (a new consumer group) changes none of them."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from services.feedback.facts import open_facts
from services.feedback.report import offer_quality
from services.feedback.service import FeedbackService, FeedbackStats
from tests.services.feedback.factories import T0, decision, feedback, purchase
from xsell.offers import FeedbackType, OfferType, offer_id_for
from xsell.settings import Settings

CROSS, UP = OfferType.CROSS_SELL, OfferType.UP_SELL
COUNTS = ("offers_sent", "clicks", "conversions", "attributed_revenue")


@pytest.fixture
def settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    """This test's topics and its own home (so its own facts database)."""
    return kafka_settings.model_copy(update={"home": tmp_path / "home"})


def produce(settings: Settings) -> None:
    """Purchases (one converting line read before its offer is likely), decisions, then feedback."""
    a1, a2 = offer_id_for("A1", "P1"), offer_id_for("A1", "P2")
    b1 = offer_id_for("A2", "P1")
    purchases = [
        purchase("A1", "C1", T0, ("P0", 1, 2.0)),
        purchase("A2", "C2", T0, ("P0", 1, 2.0)),
        purchase("B1", "C1", T0 + timedelta(days=1), ("P1", 2, 5.0), ("P9", 1, 3.0)),  # converts A1/P1: 10.0
        purchase("B2", "C1", T0 + timedelta(days=7), ("P2", 1, 20.0)),  # exactly 7 days: converts A1/P2: 20.0
        purchase("B3", "C2", T0 + timedelta(days=8), ("P1", 1, 5.0)),  # after the window
        purchase("B4", None, T0 + timedelta(days=1), ("P1", 1, 5.0)),  # anonymous
    ]
    decisions = [decision("A1", "C1", T0, ("P1", CROSS), ("P2", UP)), decision("A2", "C2", T0, ("P1", CROSS))]
    events = [
        feedback(FeedbackType.IMPRESSION, a1),
        feedback(FeedbackType.CLICK, a1),
        feedback(FeedbackType.EMAIL_SENT, a2),
        feedback(FeedbackType.EMAIL_CLICKED, b1, "C2"),
    ]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        for event in purchases:
            producer.send(settings.topic_purchases, key=event.key(), value=event.to_bytes())
        producer.send(settings.topic_purchases, key=b"C9", value=b"{broken")  # ingestion dead-letters it
        for item in decisions:
            producer.send(settings.topic_offers, key=item.key(), value=item.to_bytes())
        for event in events + events[:2]:  # duplicates: an at-least-once producer retried
            producer.send(settings.topic_offer_feedback, key=(event.offer_id or "").encode(), value=event.to_bytes())
        producer.flush()
    finally:
        producer.close()


def run_until_caught_up(settings: Settings, group_id: str) -> FeedbackStats:
    """Run the service in a thread (signal handlers stay pytest's) until every partition is read."""
    service = FeedbackService(settings, group_id=group_id, until_caught_up=True)
    result: list[FeedbackStats | BaseException] = []

    def target() -> None:
        try:
            result.append(service.run())
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            result.append(error)

    thread = threading.Thread(target=target, name="feedback-under-test")
    thread.start()
    thread.join(60)
    if thread.is_alive():
        service.stop()
        thread.join(10)
        pytest.fail("feedback service did not catch up")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_feedback_service_stores_facts_attributes_and_the_report_counts_them(settings: Settings) -> None:
    produce(settings)
    group = f"feedback-{uuid.uuid4().hex[:8]}"
    stats = run_until_caught_up(settings, group)
    assert stats.records == 15 and stats.skipped == {"invalid_purchase": 1}
    engine = open_facts(settings.db_url)
    report = offer_quality(engine)
    assert {k: report[k] for k in COUNTS} == {
        "offers_sent": 3,
        "clicks": 2,
        "conversions": 2,
        "attributed_revenue": 30.0,
    }
    assert {t: {k: v[k] for k in COUNTS} for t, v in report["by_offer_type"].items()} == {
        "cross_sell": {"offers_sent": 2, "clicks": 2, "conversions": 1, "attributed_revenue": 10.0},
        "up_sell": {"offers_sent": 1, "clicks": 0, "conversions": 1, "attributed_revenue": 20.0},
    }
    assert report["impressions"] == 1 and report["emails_sent"] == 1 and report["aov_converting_orders"] == 16.5
    assert report["latency_ms"]["count"] == 2  # both decisions matched their purchase records

    again = run_until_caught_up(settings, group)  # same group: nothing left to read
    assert again.records == 0
    replay = run_until_caught_up(settings, f"{group}-replay")  # a new group reads everything again
    assert replay.records == 15 and replay.feedback_new == 0 and replay.conversions_written == 0
    assert offer_quality(engine) == report
    engine.dispose()
