"""Publishing feedback facts to `offer-feedback`.

Handlers depend on the small `FeedbackPublisher` protocol. The service uses `KafkaFeedbackPublisher`
(acks=all, idempotent producer) and returns only once the broker acknowledged, so a 202 means the
fact is durable. A caller that retries with the same idempotency key produces the same feedback id,
which consumers de-duplicate.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Protocol

from kafka.errors import KafkaError

from services.messaging import durable_producer
from xsell.metrics import FEEDBACK_EVENTS
from xsell.offers import FeedbackEvent
from xsell.settings import Settings

log = logging.getLogger(__name__)


class FeedbackPublishError(RuntimeError):
    """The feedback fact could not be made durable."""


class FeedbackPublisher(Protocol):
    """Somewhere feedback facts go; `publish` returns once the fact is stored."""

    def publish(self, event: FeedbackEvent) -> None:
        """Store one fact or raise `FeedbackPublishError`."""
        ...


def feedback_key(event: FeedbackEvent) -> bytes | None:
    """Kafka key of a feedback fact: the offer id, or the customer id for customer-wide facts."""
    key = event.offer_id or event.customer_id
    return key.encode() if key else None


class KafkaFeedbackPublisher:
    """Produce feedback to `settings.topic_offer_feedback` and wait for the broker's ack."""

    def __init__(self, settings: Settings, ack_timeout_s: float = 10.0) -> None:
        self.topic = settings.topic_offer_feedback
        self.ack_timeout_s = ack_timeout_s
        try:
            self.producer = durable_producer(settings, "xsell-api", retries=5, linger_ms=2)
        except KafkaError as error:
            raise FeedbackPublishError(
                f"Kafka at {settings.kafka_bootstrap} is unreachable (is `xsell stack up` running?)"
            ) from error

    def publish(self, event: FeedbackEvent) -> None:
        """Send one fact and block until acknowledged (or raise `FeedbackPublishError`)."""
        try:
            self.producer.send(self.topic, key=feedback_key(event), value=event.to_bytes()).get(
                timeout=self.ack_timeout_s
            )
            FEEDBACK_EVENTS.labels(str(event.type)).inc()
        except KafkaError as error:
            log.error("feedback not published", extra={"type": event.type.value, "error": type(error).__name__})
            raise FeedbackPublishError("offer-feedback did not acknowledge") from error

    def close(self) -> None:
        """Flush what is pending and close the producer."""
        self.producer.close(timeout=self.ack_timeout_s)

    def __enter__(self) -> KafkaFeedbackPublisher:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
