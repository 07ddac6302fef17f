"""E-mail delivery against the real broker and a real SMTP server (aiosmtpd) on a free loopback port.

Each e-mail is checked where it lands: the capture server's .eml files. Nothing is mocked.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from kafka import KafkaProducer

from infra.kafka.broker import free_port
from infra.smtp_capture import MailDirHandler, capture_status, start_capture, stop_capture
from services.delivery.outbox import OutboxStatus
from services.delivery.render import message_id_for
from services.delivery.service import DeliveryService
from xsell.consumer import wait_for
from xsell.offers import (
    Channel,
    FeedbackEvent,
    FeedbackType,
    OfferDecision,
    OfferItem,
    OfferType,
    decision_id_for,
    offer_id_for,
)
from xsell.settings import Settings

FAST_RETRY = {"retry_base_s": 0.2, "retry_max_s": 1.0, "tick_s": 0.1, "smtp_timeout_s": 5.0}


@pytest.fixture
def settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    """This test's topics, its own home (outbox, mail dir), consumer group and SMTP port."""
    return kafka_settings.model_copy(
        update={
            "home": tmp_path / "home",
            "delivery_group": f"delivery-{uuid.uuid4().hex[:8]}",
            "smtp_port": free_port(),
            "public_base_url": "https://shop.example",
        }
    )


class RefusingHandler(MailDirHandler):
    """Stores messages, but refuses for good any recipient whose address starts with `bounce`."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def smtp_server(settings: Settings) -> Iterator[Callable[..., Controller]]:
    """Start a real aiosmtpd server on the settings' port when the test says so; stopped at the end."""
    started: list[Controller] = []

    def start(handler_class: type[MailDirHandler] = MailDirHandler) -> Controller:
        controller = Controller(handler_class(settings.mail_dir), hostname=settings.smtp_host, port=settings.smtp_port)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


def make_decision(
    order_id: str,
    *,
    customer_id: str = "C1",
    email: str | None = "shopper@example.org",
    channels: tuple[Channel, ...] = (Channel.EMAIL, Channel.IN_APP),
    consent: bool = True,
) -> OfferDecision:
    now = datetime.now(UTC)
    offers = tuple(
        OfferItem(
            offer_id=offer_id_for(order_id, product),
            product_id=product,
            name=f'SET OF 3 "TINS" & {product}',
            price=4.95 + rank,
            offer_type=OfferType.CROSS_SELL,
            rank=rank,
            score=1.0 / rank,
            reason="Goes well with your MUG",
        )
        for rank, product in enumerate(("P1", "P2"), start=1)
    )
    return OfferDecision(
        decision_id=decision_id_for(f"event-{order_id}"),
        event_id=f"event-{order_id}",
        order_id=order_id,
        customer_id=customer_id,
        customer_email=email,
        marketing_consent=consent,
        occurred_at=now,
        decided_at=now,
        model_version="1",
        offers=offers,
        channels=channels,
    )


def produce(settings: Settings, decisions: list[OfferDecision]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        for decision in decisions:
            producer.send(settings.topic_offers, key=decision.key(), value=decision.to_bytes())
        producer.flush()
    finally:
        producer.close()


@contextmanager
def running(settings: Settings, **options: float) -> Iterator[DeliveryService]:
    """Run a DeliveryService in a thread; stop it gracefully on exit and surface its errors."""
    service = DeliveryService(settings, **options)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread below
            errors.append(error)

    thread = threading.Thread(target=target, name="delivery-under-test")
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(30)
        assert not thread.is_alive(), "delivery service did not stop"
    if errors:
        raise errors[0]


def mails(settings: Settings) -> list[Message]:
    """Every message the capture server stored, in arrival order."""
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default) for path in sorted(settings.mail_dir.glob("*.eml"))
    ]


def finished(service: DeliveryService, decisions: list[OfferDecision], status: OutboxStatus) -> bool:
    rows = [service.outbox.get(d.decision_id) for d in decisions]
    return all(row is not None and row.status == status and row.reported for row in rows)


def feedback(read_topic, settings: Settings, expected: int) -> list[FeedbackEvent]:
    return [
        FeedbackEvent.model_validate_json(r.value) for r in read_topic(settings.topic_offer_feedback, expected=expected)
    ]


def test_a_decision_yields_exactly_one_email_through_the_capture_server(settings: Settings, read_topic) -> None:
    pid = start_capture(settings)
    try:
        assert start_capture(settings) == pid  # idempotent
        decision = make_decision("536365")
        produce(settings, [decision])
        with running(settings, **FAST_RETRY) as service:
            assert wait_for(lambda: finished(service, [decision], OutboxStatus.SENT), 20)
        [mail] = mails(settings)
        assert mail["Message-ID"] == message_id_for(decision.decision_id, settings.mail_from)
        assert mail["To"] == "shopper@example.org"
        html = mail.get_body(("html",)).get_content()
        assert "SET OF 3 &#34;TINS&#34; &amp; P1" in html and "https://shop.example/r/" in html
        assert 'SET OF 3 "TINS" & P1' in mail.get_body(("plain",)).get_content()
        events = feedback(read_topic, settings, expected=2)
        assert sorted((e.type, e.offer_id) for e in events) == sorted(
            (FeedbackType.EMAIL_SENT, offer.offer_id) for offer in decision.offers
        )
        assert capture_status(settings).messages == 1
    finally:
        assert stop_capture(settings)
    assert not capture_status(settings).running


def test_the_same_decision_twice_or_replayed_yields_one_email(settings: Settings, smtp_server, read_topic) -> None:
    smtp_server()
    decision = make_decision("536366")
    produce(settings, [decision, decision])
    with running(settings, **FAST_RETRY) as service:
        assert wait_for(
            lambda: service.loop.records_handled >= 2 and finished(service, [decision], OutboxStatus.SENT), 20
        )
    # a new consumer group re-reads the topic from the start: both records are duplicates of a sent row
    replay = settings.model_copy(update={"delivery_group": f"{settings.delivery_group}-replay"})
    with running(replay, **FAST_RETRY) as again:
        assert wait_for(lambda: again.stats.decisions == 2, 20)
    assert again.stats.duplicates + again.stats.skipped["duplicate_in_batch"] == 2
    assert again.stats.queued == 0 and again.stats.sent == 0
    assert [m["Message-ID"] for m in mails(settings)] == [message_id_for(decision.decision_id, settings.mail_from)]
    assert len(feedback(read_topic, settings, expected=2)) == 2


def test_smtp_down_then_up_delivers_every_email_exactly_once(settings: Settings, smtp_server, read_topic) -> None:
    first = [make_decision(f"DOWN{i}", customer_id=f"C{i}") for i in range(3)]
    produce(settings, first)
    with running(settings, **FAST_RETRY) as service:  # no server on the port: every attempt is refused
        assert wait_for(
            lambda: all((row := service.outbox.get(d.decision_id)) is not None and row.attempts >= 2 for d in first), 20
        )
        assert service.stats.sent == 0
    assert mails(settings) == []

    later = make_decision("DOWN9", customer_id="C9")
    with running(settings, **FAST_RETRY) as service:  # a restart: queued rows come from the outbox, not Kafka
        produce(settings, [later])
        assert wait_for(lambda: (row := service.outbox.get(later.decision_id)) is not None and row.attempts >= 1, 20)
        smtp_server()
        assert wait_for(lambda: finished(service, [*first, later], OutboxStatus.SENT), 20)
    expected = sorted(message_id_for(d.decision_id, settings.mail_from) for d in [*first, later])
    assert sorted(m["Message-ID"] for m in mails(settings)) == expected  # each once
    events = feedback(read_topic, settings, expected=8)
    assert len(events) == 8 and len({e.feedback_id for e in events}) == 8
    assert {e.type for e in events} == {FeedbackType.EMAIL_SENT}


def test_decisions_without_the_email_channel_send_nothing(settings: Settings, smtp_server) -> None:
    smtp_server()
    silent = [
        make_decision("APP1", channels=(Channel.IN_APP,)),
        make_decision("NONE1", channels=()),
        make_decision("NOCONSENT1", consent=False),
    ]
    marker = make_decision("MARK1")  # same customer, same partition: handled after the others
    produce(settings, [*silent, marker])
    with running(settings, **FAST_RETRY) as service:
        assert wait_for(lambda: finished(service, [marker], OutboxStatus.SENT), 20)
    assert [m["Message-ID"] for m in mails(settings)] == [message_id_for(marker.decision_id, settings.mail_from)]
    assert service.stats.skipped == {"no_email_channel": 2, "no_consent": 1}
    assert service.outbox.counts() == {"pending": 0, "sent": 1, "failed": 0}


def test_a_permanent_refusal_is_not_retried_and_reported_as_bounced(
    settings: Settings, smtp_server, read_topic
) -> None:
    smtp_server(RefusingHandler)
    refused = make_decision("BOUNCE1", customer_id="C1", email="bounce@example.org")
    accepted = make_decision("OK1", customer_id="C1")
    produce(settings, [refused, accepted])
    with running(settings, **FAST_RETRY) as service:
        assert wait_for(
            lambda: (
                finished(service, [refused], OutboxStatus.FAILED) and finished(service, [accepted], OutboxStatus.SENT)
            ),
            20,
        )
    row = service.outbox.get(refused.decision_id)
    assert row is not None and row.attempts == 1 and "550" in (row.last_error or "")
    assert "bounce@" not in (row.last_error or "")
    assert [m["Message-ID"] for m in mails(settings)] == [message_id_for(accepted.decision_id, settings.mail_from)]
    events = feedback(read_topic, settings, expected=4)
    assert sorted(e.type for e in events) == [FeedbackType.BOUNCED] * 2 + [FeedbackType.EMAIL_SENT] * 2
