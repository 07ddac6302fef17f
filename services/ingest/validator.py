"""The validating consumer behind `xsell ingest`: every record on `purchases` is either a valid
event (counted) or dead-lettered with its reason. Nothing is dropped and nothing crashes it.

`validate_batch` is the pure step (records in, outcomes out) that unit tests call without Kafka;
`IngestService` wires it to the consumer loop and a DLQ producer, and commits offsets only after
the batch's dead letters are acknowledged by the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from kafka import KafkaProducer

from services.ingest.dead_letter import DeadLetter, dead_letter_for
from services.ingest.summary import IngestSummary
from services.messaging import durable_producer
from xsell.consumer import ConsumerLoop, Record
from xsell.events import EventRejected, PurchaseEvent, parse_purchase_event
from xsell.metrics import DEAD_LETTERS
from xsell.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutcome:
    """Valid events and dead letters of one batch, in input order within each list."""

    events: list[PurchaseEvent]
    dead_letters: list[DeadLetter]


def validate_batch(records: Sequence[Record], settings: Settings) -> BatchOutcome:
    """Parse each record; a record that fails becomes a dead letter with reason and source."""
    events: list[PurchaseEvent] = []
    dead_letters: list[DeadLetter] = []
    for record in records:
        try:
            events.append(parse_purchase_event(record.value, settings.max_event_bytes))
        except EventRejected as rejection:
            dead_letters.append(dead_letter_for(record, rejection, settings.dlq_max_message_bytes))
    return BatchOutcome(events=events, dead_letters=dead_letters)


class IngestService:
    """Consumer group `settings.ingest_group` on `purchases`, dead-lettering to `purchases.dlq`."""

    def __init__(self, settings: Settings, until_caught_up: bool = False) -> None:
        self.settings = settings
        self.summary = IngestSummary()
        self._producer: KafkaProducer | None = None
        self.loop = ConsumerLoop(
            settings,
            group_id=settings.ingest_group,
            topics=[settings.topic_purchases],
            handler=self.handle,
            client_id="xsell-ingest",
            until_caught_up=until_caught_up,
        )

    def handle(self, records: list[Record]) -> None:
        """Validate a batch; produce its dead letters and wait for the broker's acks."""
        outcome = validate_batch(records, self.settings)
        for event in outcome.events:
            self.summary.add_event(event)
        if outcome.dead_letters:
            assert self._producer is not None, "handle() runs inside run()"
            futures = [
                self._producer.send(
                    self.settings.topic_purchases_dlq, key=letter.key, value=letter.value, headers=letter.headers
                )
                for letter in outcome.dead_letters
            ]
            self._producer.flush()
            for future, letter in zip(futures, outcome.dead_letters, strict=True):
                future.get()  # raises if the DLQ refused it: the batch is then not committed
                self.summary.add_dead_letter(letter.reason)
                DEAD_LETTERS.labels(letter.reason).inc()
                log.warning("dead-lettered", extra={"reason": letter.reason, **_source(letter)})

    def run(self) -> IngestSummary:
        """Run until SIGTERM (or until caught up); return what was seen."""
        with ExitStack() as stack:
            self._producer = durable_producer(
                self.settings, "xsell-ingest-dlq", max_request_size=self.settings.dlq_max_message_bytes
            )
            stack.callback(self._producer.close)
            self.loop.run()
        return self.summary

    def stop(self) -> None:
        """Ask the service to stop after the current batch."""
        self.loop.stop()


def _source(letter: DeadLetter) -> dict[str, str]:
    headers = letter.header_map
    return {key.replace(".", "_"): headers[key] for key in ("source.topic", "source.partition", "source.offset")}
