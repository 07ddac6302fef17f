"""The archiving consumer behind `xsell archive`: every valid purchase and cancellation on
`purchases` lands in the purchase archive (`features.archive`), each line once.

Its own consumer group. Per batch: parse (records that ingestion dead-letters are skipped, as
every consumer of `purchases` does), write the lines in one transaction that ignores lines already
archived, then the loop commits offsets. A crash between the write and the commit re-delivers the
batch, and the second write adds nothing: exactly once in the archive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from features.archive import PurchaseArchive
from xsell.consumer import ConsumerLoop, Record
from xsell.events import PurchaseEvent, valid_events
from xsell.metrics import ARCHIVE_LINES, ARCHIVE_NEWEST_PURCHASE
from xsell.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ArchiveStats:
    """Counts since start."""

    events: int = 0
    lines_added: int = 0
    skipped_invalid: int = 0


class ArchiveService:
    """Consumer group `settings.archive_group` on `purchases`, writing to the purchase archive."""

    def __init__(self, settings: Settings, until_caught_up: bool = False) -> None:
        self.settings = settings
        self.archive = PurchaseArchive(settings.db_url)
        self.stats = ArchiveStats()
        self.newest = 0.0  # event time of the newest archived purchase (Unix seconds)
        self.loop = ConsumerLoop(
            settings,
            group_id=settings.archive_group,
            topics=[settings.topic_purchases],
            handler=self.handle,
            client_id="xsell-archive",
            until_caught_up=until_caught_up,
        )

    def handle(self, records: list[Record]) -> None:
        """Archive one batch (offsets are committed by the loop after this returns)."""
        events, skipped = valid_events((r.value for r in records), self.settings.max_event_bytes)
        self.stats.skipped_invalid += skipped
        self.apply(events)

    def apply(self, events: list[PurchaseEvent]) -> None:
        """The batch step without Kafka: archive the events' lines, count what was new."""
        if not events:
            return
        added = self.archive.add_events(events)
        self.stats.events += len(events)
        self.stats.lines_added += added
        ARCHIVE_LINES.inc(added)
        self.newest = max([self.newest, *(event.occurred_at.timestamp() for event in events)])
        ARCHIVE_NEWEST_PURCHASE.set(self.newest)

    def run(self) -> ArchiveStats:
        """Run until SIGTERM (or until caught up), then release the database."""
        _, newest, _ = self.archive.span()
        if newest is not None:
            self.newest = newest.timestamp()
            ARCHIVE_NEWEST_PURCHASE.set(self.newest)
        try:
            self.loop.run()
        finally:
            self.archive.close()
        log.info("archive stopped", extra=self.stats.__dict__)
        return self.stats
