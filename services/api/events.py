"""What the shop sends over HTTP, produced to Kafka: purchase events and the decisions of offers on request.

`POST /v1/purchases` answers 202 only once the broker acknowledged every event (acks=all,
idempotent producer), so a 202 means the purchase is durable. A purchase's event id derives from
its order id (`xsell.events.event_id_for`) unless the shop sends its own, and every stage
downstream de-duplicates by event id: a retried request has no second effect. When the broker
does not acknowledge in `api_ack_timeout_s`, the request fails with `BrokerUnavailable` (a 503
with Retry-After); for `retry_after_s` after that, requests fail at once instead of each waiting
the timeout. A batch the broker took in part is safe to send again, for the same reason.

The decisions of `POST /v1/recommendations` are recorded on `offers` like the offer service's
(the inbox and the feedback facts read them there), after the answer and without waiting for the
broker: an answer is not held up by recording it; a failure is logged and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy.exc import SQLAlchemyError

from services.inbox.store import InboxStore
from services.messaging import durable_producer
from services.queues import batches
from xsell.events import PurchaseEvent
from xsell.metrics import API_EVENTS
from xsell.offers import OfferDecision
from xsell.settings import Settings

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge; retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EventPublisher(Protocol):
    """Where the API's purchases and decisions go."""

    def publish_purchases(self, events: Sequence[PurchaseEvent]) -> None:
        """Return once every event is acknowledged, or raise `BrokerUnavailable`."""
        ...

    def record_decisions(self, decisions: Sequence[OfferDecision]) -> None:
        """Send decisions without waiting for them (failures are logged)."""
        ...

    def close(self) -> None:
        """Flush what is pending and let go of the broker."""
        ...


class KafkaEventPublisher:
    """Produces to `purchases` and to `offers`, each with a producer of its own made on first use (an
    API that never takes a purchase never connects): a purchase's 202 waits for its acknowledgement,
    so purchases go out at once (1 ms linger); decisions are recorded without waiting, so they go out
    together (`api_decision_linger_ms`), in a fraction of the requests to the broker."""

    def __init__(self, settings: Settings, retry_after_s: int = 5) -> None:
        self.settings = settings
        self.retry_after_s = retry_after_s
        self._producers: dict[str, KafkaProducer] = {}  # by what it sends: purchases, decisions
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic time until which the broker counts as down

    def _connected(self, sends: str, linger_ms: int) -> KafkaProducer:
        """The producer of what it ``sends`` ("purchases", "decisions"), made on first use with ``linger_ms``."""
        if time.monotonic() < self._down_until:
            raise BrokerUnavailable("the broker is unavailable; retry later", self.retry_after_s)
        with self._lock:
            producer = self._producers.get(sends)
            if producer is None:
                timeout_ms = int(self.settings.api_ack_timeout_s * 1000)
                try:
                    producer = self._producers[sends] = durable_producer(
                        self.settings,
                        f"xsell-api-{sends}",
                        retries=5,
                        linger_ms=linger_ms,
                        max_block_ms=timeout_ms,
                        request_timeout_ms=max(timeout_ms // 2, 1),
                        delivery_timeout_ms=timeout_ms,  # an event not acknowledged in time is not sent later
                    )
                except KafkaError as error:
                    raise self._down(error) from error
            return producer

    def _down(self, error: Exception) -> BrokerUnavailable:
        self._down_until = time.monotonic() + self.retry_after_s
        log.error("broker unavailable", extra={"error": f"{type(error).__name__}: {error}"})
        return BrokerUnavailable(f"Kafka at {self.settings.kafka_bootstrap} did not acknowledge", self.retry_after_s)

    def publish_purchases(self, events: Sequence[PurchaseEvent]) -> None:
        """Send every event keyed by customer and wait for all acknowledgements."""
        producer = self._connected("purchases", linger_ms=1)  # each waits for its acknowledgement
        try:
            futures = [
                producer.send(self.settings.topic_purchases, key=event.key(), value=event.to_bytes())
                for event in events
            ]
            for future in futures:
                future.get(timeout=self.settings.api_ack_timeout_s)
        except KafkaError as error:
            raise self._down(error) from error
        API_EVENTS.labels("purchase").inc(len(events))

    def record_decisions(self, decisions: Sequence[OfferDecision]) -> None:
        """Send the decisions to `offers`; a failure is logged and counted, not raised."""
        try:
            producer = self._connected("decisions", linger_ms=self.settings.api_decision_linger_ms)
            for decision in decisions:
                producer.send(self.settings.topic_offers, key=decision.key(), value=decision.to_bytes()).add_errback(
                    _not_recorded
                )
        except (KafkaError, BrokerUnavailable) as error:
            API_EVENTS.labels("decision_not_recorded").inc(len(decisions))
            log.warning("decisions not recorded", extra={"count": len(decisions), "error": type(error).__name__})
            return
        API_EVENTS.labels("decision").inc(len(decisions))

    def close(self) -> None:
        """Flush and close the producers that were made."""
        with self._lock:
            for producer in self._producers.values():
                producer.close(timeout=self.settings.api_ack_timeout_s)
            self._producers.clear()


def _not_recorded(error: Exception) -> None:
    API_EVENTS.labels("decision_not_recorded").inc()
    log.warning("decision not recorded", extra={"error": type(error).__name__})


class DecisionRecorder:
    """Records the decisions of offers on request off the recommender's thread, so recording adds
    nothing to the next answer's wait: in the inbox at once (the shop may report an impression as
    soon as it shows an offer, before the inbox consumer has read `offers`), then on `offers` for
    everything downstream (the consumer's second store of them changes nothing). What waits when it
    gets to run is recorded together."""

    def __init__(self, inbox: InboxStore, events: EventPublisher) -> None:
        self.inbox = inbox
        self.events = events
        self._queue: queue.SimpleQueue[list[OfferDecision] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="decision-recorder", daemon=True)

    def start(self) -> DecisionRecorder:
        """Start recording."""
        self._thread.start()
        return self

    def record(self, decisions: list[OfferDecision]) -> None:
        """Queue decisions to record."""
        self._queue.put(decisions)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Record what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        for waiting in batches(self._queue):
            self._store([decision for decisions in waiting for decision in decisions])

    def _store(self, decisions: list[OfferDecision]) -> None:
        try:
            self.inbox.store_decisions(decisions)
        except SQLAlchemyError as error:  # the inbox consumer stores them from `offers`
            log.warning("offers on request not stored in the inbox", extra={"error": type(error).__name__})
        self.events.record_decisions(decisions)
