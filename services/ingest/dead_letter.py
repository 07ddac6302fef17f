"""Dead-letter records: the original bytes, why they were refused, and where they came from.

The DLQ record keeps the original key and value (Kafka Connect's convention) and puts the reason,
the error and the source topic/partition/offset in headers, so the original can be replayed as is.
An original larger than the DLQ topic accepts is truncated, never dropped: headers then carry its
full size, its SHA-256 digest and `truncated=true`. `dead_letter_count` says how many records the
DLQ topic holds (the ops dashboard shows it), failing fast when the broker is unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from xsell.consumer import Record
from xsell.events import EventRejected, digest
from xsell.kafka_security import client_security
from xsell.settings import Settings

HEADER_PREFIX = "xsell.dlq."
# Room left in a DLQ record for key, headers and batch overhead when the value must be truncated.
TRUNCATION_HEADROOM_BYTES = 16 * 1024


@dataclass(frozen=True)
class DeadLetter:
    """One record to produce to the DLQ topic."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    reason: str

    @property
    def header_map(self) -> dict[str, str]:
        """Headers as text, for tests and the CLI."""
        return {name.removeprefix(HEADER_PREFIX): value.decode() for name, value in self.headers}


def dead_letter_for(record: Record, rejection: EventRejected, dlq_max_bytes: int) -> DeadLetter:
    """Build the DLQ record for `record`, truncating its value to fit `dlq_max_bytes`."""
    original = record.value or b""
    limit = max(dlq_max_bytes - TRUNCATION_HEADROOM_BYTES, 0)
    truncated = len(original) > limit
    headers = {
        "reason": str(rejection.reason),
        "error": rejection.detail[:1000],
        "source.topic": record.topic,
        "source.partition": str(record.partition),
        "source.offset": str(record.offset),
        "source.timestamp": str(record.timestamp),
        "original.size": str(len(original)),
        "original.sha256": digest(original),
        "truncated": "true" if truncated else "false",
    }
    return DeadLetter(
        key=record.key,
        value=original[:limit] if truncated else original,
        headers=[(HEADER_PREFIX + name, value.encode()) for name, value in headers.items()],
        reason=str(rejection.reason),
    )


def dead_letter_count(settings: Settings, timeout_s: float = 2.0) -> int:
    """Records in `settings.topic_purchases_dlq` (end minus beginning offsets; 0 if the topic is absent).

    Raises `kafka.errors.KafkaError` when the broker does not answer within about `timeout_s`.
    """
    timeout_ms = max(1, int(timeout_s * 1000))
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        client_id="xsell-dlq-count",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        allow_auto_create_topics=False,
        **client_security(settings),
    )
    try:
        topic = settings.topic_purchases_dlq
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        if not partitions:
            return 0
        ends = consumer.end_offsets(partitions, timeout_ms=timeout_ms)
        starts = consumer.beginning_offsets(partitions, timeout_ms=timeout_ms)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        consumer.close()
