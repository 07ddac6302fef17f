"""`xsell replay`: read a purchase-history file, group it into events and produce them to
`purchases` in time order, keyed by customer id, with acks=all and idempotent retries.

Event ids are deterministic (order id + event type), so replaying the same file twice yields the
same ids and downstream consumers can de-duplicate.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from services.messaging import durable_producer
from xsell.events import PurchaseEvent
from xsell.history import PurchaseHistory, events_from_history, read_purchase_history
from xsell.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    """What a replay did: events sent by type, rows skipped by reason, and how fast."""

    sent: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total_sent(self) -> int:
        """All events produced."""
        return sum(self.sent.values())

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "sent": self.total_sent,
            "sent_by_type": dict(self.sent),
            "skipped_rows": dict(self.skipped),
            "seconds": round(self.seconds, 2),
            "events_per_s": round(self.total_sent / self.seconds, 1) if self.seconds else None,
        }


@dataclass(frozen=True)
class Pacing:
    """How fast to replay: as fast as possible, at `rate` events/s, or `speedup` x real time."""

    rate: float | None = None
    speedup: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and self.speedup is not None:
            raise ValueError("give --rate or --speedup, not both")
        if (self.rate is not None and self.rate <= 0) or (self.speedup is not None and self.speedup <= 0):
            raise ValueError("--rate and --speedup must be positive")

    def delay_until(self, index: int, occurred_at: datetime, first_at: datetime, started: float) -> float:
        """Monotonic time at which event number `index` is due."""
        if self.rate is not None:
            return started + index / self.rate
        if self.speedup is not None:
            return started + (occurred_at - first_at).total_seconds() / self.speedup
        return started

    @property
    def paced(self) -> bool:
        """True when events are spread over time rather than sent as fast as possible."""
        return self.rate is not None or self.speedup is not None


def select_events(
    history: PurchaseHistory, since: datetime | None = None, limit: int | None = None
) -> Iterator[PurchaseEvent]:
    """The history's events in time order, from `since` on, at most `limit` of them."""
    lines = history.lines
    if since is not None:
        lines = lines[lines["ordered_at"] >= since]
    for count, event in enumerate(events_from_history(lines)):
        if limit is not None and count >= limit:
            return
        yield event


def produce_events(
    settings: Settings,
    events: Iterator[PurchaseEvent],
    pacing: Pacing = Pacing(),
    on_sent: Callable[[PurchaseEvent], None] | None = None,
) -> Counter[str]:
    """Produce events to `purchases` (acks=all, idempotent); raise if any was not acknowledged.

    Paced events go out one by one as they fall due, as a live shop sends them (no linger: holding
    them back to batch would add its wait to every event's latency); the pace starts once the
    producer knows the topic, or the connection's set-up would be caught up in a burst."""
    producer = durable_producer(
        settings,
        "xsell-replay",
        linger_ms=0 if pacing.paced else 5,
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    if pacing.paced:
        producer.partitions_for(settings.topic_purchases)  # connect and fetch metadata before the clock starts
    failures: list[BaseException] = []
    sent: Counter[str] = Counter()
    started = time.monotonic()
    first_at: datetime | None = None
    try:
        for index, event in enumerate(events):
            first_at = first_at or event.occurred_at
            due = pacing.delay_until(index, event.occurred_at, first_at, started)
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            producer.send(settings.topic_purchases, key=event.key(), value=event.to_bytes()).add_errback(
                failures.append
            )
            sent[str(event.event_type)] += 1
            if on_sent is not None:
                on_sent(event)
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} events were not acknowledged by the broker: {failures[0]!r}")
    return sent


def replay_file(
    settings: Settings,
    path: Path,
    pacing: Pacing = Pacing(),
    since: datetime | None = None,
    limit: int | None = None,
    on_sent: Callable[[PurchaseEvent], None] | None = None,
) -> ReplayReport:
    """Read `path` and produce its events; return counts of what was sent and skipped."""
    started = time.monotonic()
    history = read_purchase_history(path)
    report = ReplayReport(skipped=Counter(history.rejected))
    report.sent = produce_events(settings, select_events(history, since, limit), pacing, on_sent)
    report.seconds = time.monotonic() - started
    log.info("replay done", extra=report.as_dict())
    return report


def with_demo_contacts(event: PurchaseEvent) -> PurchaseEvent:
    """The event with a synthetic contact for the demo: `customer-ID@example.com` (a reserved
    domain, RFC 2606) and marketing consent. The purchase itself is unchanged; real data sets with
    customer_email and marketing_consent columns need no such step."""
    if event.customer_id is None:
        return event
    return event.model_copy(
        update={"customer_email": f"customer-{event.customer_id}@example.com", "marketing_consent": True}
    )
