"""The pure step of delivery (which decisions become outbox entries, feedback for finished rows),
and a sender whose claims another sender took over mid-pass (a real SMTP server, aiosmtpd)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from infra.kafka.broker import free_port
from infra.smtp_capture import MailDirHandler
from services.delivery.outbox import Outbox, OutboxRow, OutboxStatus
from services.delivery.render import MAIL_POLICY
from services.delivery.service import DeliveryService, dated_now, feedback_for, plan_emails
from services.delivery.smtp import SmtpSession
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
        record("d7", customer_email="c7@example.org\r\nBcc: everyone@example.org"),  # a header injection
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
        "unrenderable": 1,
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


class TakeoverHandler(MailDirHandler):
    """Stores messages; while the first one arrives, sender `B` takes over every claimed row (as
    after the sender's lease ran out)."""

    def __init__(self, mail_dir: Path, outbox: Outbox) -> None:
        super().__init__(mail_dir)
        self.outbox = outbox
        self.taken: list[OutboxRow] = []

    async def handle_DATA(self, server, session, envelope):
        if not self.taken:
            self.taken = self.outbox.claim_due(time.time() + 10_000, "B")
        return await super().handle_DATA(server, session, envelope)


def test_a_sender_whose_claims_were_taken_over_records_nothing_and_ends_its_pass(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(update={"smtp_port": free_port()})
    service = DeliveryService(settings, smtp_timeout_s=5.0)
    service.outbox.add(plan_emails([record(f"d{n}") for n in range(3)], settings).entries, time.time())
    handler = TakeoverHandler(settings.mail_dir, Outbox.for_settings(settings))
    smtp = Controller(handler, hostname=settings.smtp_host, port=settings.smtp_port)
    smtp.start()
    try:
        with caplog.at_level(logging.WARNING, logger="services.delivery.service"):
            assert service.send_due() == 0
    finally:
        smtp.stop()
    assert len(list(settings.mail_dir.glob("*.eml"))) == 1  # the first went out; the rest are B's to send
    assert {row.decision_id for row in handler.taken} == {"d0", "d1", "d2"}
    for row in handler.taken:
        stored = service.outbox.get(row.decision_id)
        assert stored is not None
        assert (stored.status, stored.leased_by, stored.lease_token, stored.attempts) == (
            OutboxStatus.PENDING,
            "B",
            row.lease_token,
            0,
        )
    [fenced] = [r for r in caplog.records if r.getMessage().startswith("outbox write fenced off")]
    assert (fenced.decision_id, fenced.outcome, fenced.lease_token) == ("d0", "sent", 1)
    [released] = [r for r in caplog.records if r.getMessage().startswith("outbox claims already taken over")]
    assert (released.claims, released.taken_over) == (2, 2)
    assert service.stats.sent == 0


def _stored(settings: Settings, **overrides: object) -> bytes:
    (entry,) = plan_emails([record(**overrides)], settings).entries
    return entry.message


def test_a_stored_message_is_dated_now_and_otherwise_sent_as_stored(settings: Settings) -> None:
    stored = _stored(settings)
    dated = dated_now(stored, now=1_700_000_000.0)
    before = message_from_bytes(stored, policy=MAIL_POLICY)
    after = message_from_bytes(dated, policy=MAIL_POLICY)
    assert b"\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n" in dated
    assert [(k, v) for k, v in after.items() if k != "Date"] == [(k, v) for k, v in before.items() if k != "Date"]
    assert dated.partition(b"\r\n\r\n")[2] == stored.partition(b"\r\n\r\n")[2]  # the body byte for byte
    assert dated_now(dated, now=1_700_000_000.0) == dated  # one Date line, replaced in place
    undated = b"\r\n".join(line for line in stored.split(b"\r\n") if not line.startswith(b"Date:"))
    assert message_from_bytes(dated_now(undated, now=0.0), policy=MAIL_POLICY)["Date"].datetime.timestamp() == 0


@pytest.mark.parametrize("address", ["c1@example.org", "josé@exämple.org"])
def test_a_stored_message_reaches_the_server_as_stored(settings: Settings, address: str) -> None:
    settings = settings.model_copy(update={"smtp_port": free_port()})
    stored = dated_now(_stored(settings, customer_email=address))
    smtp = Controller(MailDirHandler(settings.mail_dir), hostname=settings.smtp_host, port=settings.smtp_port)
    smtp.start()
    try:
        with SmtpSession(settings) as session:
            session.send_bytes(stored)
    finally:
        smtp.stop()
    (received,) = [message_from_bytes(p.read_bytes(), policy=MAIL_POLICY) for p in settings.mail_dir.glob("*.eml")]
    sent = message_from_bytes(stored, policy=MAIL_POLICY)
    assert received["Message-ID"] == sent["Message-ID"] and received["Date"] == sent["Date"]
    assert str(received["To"]) == address
    assert received.get_body(("html",)).get_content() == sent.get_body(("html",)).get_content()
