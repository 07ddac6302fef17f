"""The feedback service's batch handler on consumed-record look-alikes and a real SQLite database:
topic order does not matter, redelivery changes nothing (no Kafka here; see tests/integration)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.feedback.report import offer_quality
from services.feedback.service import FeedbackService
from tests.conftest import FakeRecord
from tests.services.feedback.factories import T0, decision, feedback, purchase
from xsell.offers import FeedbackType, OfferType, offer_id_for
from xsell.settings import load_settings


def service(tmp_path: Path, **options: object) -> FeedbackService:
    return FeedbackService(load_settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'facts.db'}"), **options)  # type: ignore[arg-type]


def records(settings_service: FeedbackService) -> dict[str, list[FakeRecord]]:
    s = settings_service.settings
    offered = decision("A1", "C1", T0, ("P1", OfferType.CROSS_SELL), ("P2", OfferType.UP_SELL))
    return {
        "purchases": [
            FakeRecord(purchase("A1", "C1", T0, ("P0", 1, 2.0)).to_bytes(), topic=s.topic_purchases, timestamp=1_000),
            FakeRecord(
                purchase("B1", "C1", T0 + timedelta(days=3), ("P1", 3, 4.0)).to_bytes(),
                topic=s.topic_purchases,
                timestamp=2_000,
            ),
            FakeRecord(b"{not json", topic=s.topic_purchases),
        ],
        "offers": [
            FakeRecord(offered.to_bytes(), topic=s.topic_offers, timestamp=1_025),
            FakeRecord(b"[]", topic=s.topic_offers),
        ],
        "feedback": [
            FakeRecord(feedback(FeedbackType.CLICK, offer_id_for("A1", "P1")).to_bytes(), topic=s.topic_offer_feedback)
        ],
    }


def figures(feedback_service: FeedbackService) -> tuple[int, int, int, float]:
    report = offer_quality(feedback_service.engine)
    return report["offers_sent"], report["clicks"], report["conversions"], report["attributed_revenue"]


def test_a_purchase_read_before_its_offer_converts_when_the_offer_arrives(tmp_path: Path) -> None:
    feedback_service = service(tmp_path)
    batches = records(feedback_service)
    feedback_service.handle(batches["purchases"])
    assert figures(feedback_service) == (0, 0, 0, 0.0)
    feedback_service.handle(batches["offers"] + batches["feedback"])
    assert figures(feedback_service) == (2, 1, 1, 12.0)
    assert feedback_service.stats.skipped == {"invalid_purchase": 1, "invalid_decision": 1}
    assert offer_quality(feedback_service.engine)["latency_ms"]["p50"] == 25.0


def test_redelivery_and_any_topic_order_give_the_same_facts(tmp_path: Path) -> None:
    feedback_service = service(tmp_path)
    batches = records(feedback_service)
    everything = batches["offers"] + batches["feedback"] + batches["purchases"]
    feedback_service.handle(everything)
    first = offer_quality(feedback_service.engine)
    feedback_service.handle(list(reversed(everything)))
    feedback_service.handle(everything + everything)
    assert offer_quality(feedback_service.engine) == first
    assert (first["offers_sent"], first["clicks"], first["conversions"], first["attributed_revenue"]) == (2, 1, 1, 12.0)


def test_the_attribution_window_is_an_option(tmp_path: Path) -> None:
    feedback_service = service(tmp_path, window=timedelta(days=2))
    batches = records(feedback_service)
    feedback_service.handle(batches["offers"] + batches["purchases"])
    assert figures(feedback_service)[2] == 0
