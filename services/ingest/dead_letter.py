"""Dead-letter records: the original bytes, why they were refused, and where they came from.

The DLQ record keeps the original key and value (Kafka Connect's convention) and puts the reason,
the error and the source topic/partition/offset in headers, so the original can be replayed as is.
An original larger than the DLQ topic accepts is truncated, never dropped: headers then carry its
full size, its SHA-256 digest and `truncated=true`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xsell.consumer import Record
from xsell.events import EventRejected, digest

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
