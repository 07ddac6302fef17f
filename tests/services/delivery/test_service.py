"""The pure step of delivery: which decisions become outbox entries, and feedback for finished rows."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes

import pytest

from services.delivery.outbox import OutboxRow, OutboxStatus
from services.delivery.render import MAIL_POLICY
from services.delivery.service import feedback_for, plan_emails
from tests.conftest import FakeRecord
from xsell.offers import Channel, FeedbackType, OfferDecision, OfferItem, OfferType, feedback_id_for
from xsell.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings(home=tmp_path)


def record(decision_id: str = "d1", **overrides: object) -> FakeRecord:
    fields: dict[str, object] = {
        "decision_id": decision_id,
        "event_id": f"e-{decision_id}",
        "order_id": "O1",
        "customer_id": "C1",
        "customer_email": "c1@example.org",
        "marketing_consent": True,
        "occurred_at": datetime(2011, 1, 1, tzinfo=UTC),
        "decided_at": datetime(2011, 1, 1, tzinfo=UTC),
        "model_version": "1",
        "channels": (Channel.EMAIL, Channel.IN_APP),
        "offers": (
            OfferItem(
                offer_id=f"{decision_id}-o1",
                product_id="P1",
                name="MUG",
                price=2.5,
                offer_type=OfferType.CROSS_SELL,
                rank=1,
                score=1.0,
                reason="Goes well with your TEA",
            ),
        ),
    }
    fields.update(overrides)
    return FakeRecord(value=OfferDecision(**fields).to_bytes(), topic="offers")  # type: ignore[arg-type]


def test_only_consented_email_decisions_with_offers_are_planned(settings: Settings) -> None:
    records = [
        record("d1"),
        record("d1"),  # the same decision twice in one batch
        record("d2", channels=(Channel.IN_APP,)),
        record("d3", channels=()),
        record("d4", marketing_consent=False),
        record("d5", customer_email=None),
        record("d6", offers=()),
        FakeRecord(value=b"{not json", topic="offers"),
    ]
    plan = plan_emails(records, settings)
    assert [e.decision_id for e in plan.entries] == ["d1"]
    assert plan.skipped == {
        "duplicate_in_batch": 1,
        "no_email_channel": 2,
        "no_consent": 1,
        "no_address": 1,
        "no_offers": 1,
        "malformed_decision": 1,
    }
    message = message_from_bytes(plan.entries[0].message, policy=MAIL_POLICY)
    assert message["Message-ID"] == "<d1@xsell.example>"
    assert plan.entries[0].offer_ids == ("d1-o1",)


def test_feedback_is_one_event_per_offer_with_deterministic_ids() -> None:
    row = OutboxRow(
        decision_id="d1",
        customer_id="C1",
        offer_ids=("o1", "o2"),
        message=b"",
        status=OutboxStatus.SENT,
        attempts=1,
        next_attempt_at=0,
        last_error=None,
        created_at=1.0,
        finished_at=2.0,
        reported=False,
    )
    events = feedback_for(row)
    assert [(e.type, e.offer_id, e.channel) for e in events] == [
        (FeedbackType.EMAIL_SENT, "o1", Channel.EMAIL),
        (FeedbackType.EMAIL_SENT, "o2", Channel.EMAIL),
    ]
    assert events[0].feedback_id == feedback_id_for("o1", "email_sent")
    assert feedback_for(row) == events
    failed = OutboxRow(**{**row.__dict__, "status": OutboxStatus.FAILED, "last_error": "550 no such user"})
    assert {e.type for e in feedback_for(failed)} == {FeedbackType.BOUNCED}
