"""The streaming feature pipeline: purchases from Kafka -> the same fold as backfill -> Feast push.

Own consumer group on `purchases`. Per micro-batch: parse (records ingestion dead-letters are
skipped, not dead-lettered twice), and in one transaction of the fold state (shared by every
instance: `features.state`) reload the entities the batch touches, fold the new events in, save
the touched state and the event ids (the order lines are the purchase archive's:
`features.archive`); then write the fresh snapshots to the online store
(`features.online.OnlineFeatureWriter`: what a Feast push writes, in one transaction on SQLite) and,
with `feast_push_offline`, push them to the offline store; then commit offsets. Re-delivered events (after a crash between any two of those steps)
are already in the state: they change nothing and their entities' current values are pushed again.
A batch whose transaction fails may have left the in-memory fold ahead of the shared state (its
events taken in, its entities changed): the fold is loaded again before the next batch, so that
the batch retried counts in full. `PipelineStats.seconds` says where a batch's time goes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from features.aggregates import FeatureFold
from features.backfill import snapshot_frame
from features.online import OnlineFeatureWriter
from features.state import FoldStateStore
from features.store import open_feature_store
from xsell.consumer import ConsumerLoop, Record
from xsell.events import PurchaseEvent, valid_events
from xsell.settings import Settings

log = logging.getLogger(__name__)
CUSTOMER_PUSH_SOURCE = "customer_stats_push_source"
PRODUCT_PUSH_SOURCE = "product_stats_push_source"


@dataclass
class PipelineStats:
    """Counts since start, and the seconds spent in each step of `FeaturePipeline.apply`:
    refresh, fold, save (with the commit), push_online, push_offline."""

    events_applied: int = 0
    duplicates: int = 0
    skipped_invalid: int = 0
    customer_rows_pushed: int = 0
    product_rows_pushed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def lap(self, step: str, started: float) -> float:
        """Add the time since ``started`` (a `time.perf_counter` value) to ``step``; return now."""
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - started
        return now


class FeaturePipeline:
    """Consumer group `settings.features_group` on `purchases`, writing through Feast push sources."""

    def __init__(self, settings: Settings, until_caught_up: bool = False) -> None:
        self.settings = settings
        self.state_store = FoldStateStore(settings.fold_state_db_url)
        self.fold: FeatureFold = self.state_store.load()
        self.store = open_feature_store(settings)
        self.online = OnlineFeatureWriter(self.store)
        self.stats = PipelineStats()
        self._fold_stale = False  # a batch failed: load the fold again before the next one
        self.loop = ConsumerLoop(
            settings,
            group_id=settings.features_group,
            topics=[settings.topic_purchases],
            handler=self.handle,
            client_id="xsell-features",
            until_caught_up=until_caught_up,
        )

    def handle(self, records: list[Record]) -> None:
        """Fold, save, push one batch (offsets are committed by the loop after this returns)."""
        events, skipped = valid_events((r.value for r in records), self.settings.max_event_bytes)
        self.stats.skipped_invalid += skipped
        self.apply(events)

    def apply(self, events: list[PurchaseEvent]) -> None:
        """The batch step without Kafka: in one transaction of the shared fold state, reload what
        the batch touches (other instances may have changed it), fold, save state + event ids +
        order lines; then push the snapshots."""
        if not events:
            return
        if self._fold_stale:
            self.fold = self.state_store.load()
            self._fold_stale = False
        started = time.perf_counter()
        try:
            with self.state_store.batch() as batch:
                batch.refresh(self.fold, events)
                started = self.stats.lap("refresh", started)
                duplicates = [e for e in events if e.event_id in self.fold.applied]
                out = self.fold.apply(events, snapshot_every_event=False)
                started = self.stats.lap("fold", started)
                customers = [str(row["customer_id"]) for row in out.customer_rows]
                products = list(dict.fromkeys(str(row["product_id"]) for row in out.product_rows))
                applied = set(out.applied)
                touched = {line.product_id for e in events if e.event_id in applied for line in e.lines}
                batch.save(
                    self.fold,
                    customers,
                    [p for p in products if p in touched],  # held: their states
                    out.moved_percentiles,  # and every percentile the batch moved
                    out.applied,
                )
        except BaseException:
            self._fold_stale = True
            raise
        self.stats.lap("save", started)
        customer_rows, product_rows = out.customer_rows, out.product_rows
        if duplicates:
            again_customers, again_products = self.fold.snapshots_for(duplicates)
            customer_rows, product_rows = customer_rows + again_customers, product_rows + again_products
        self._push({CUSTOMER_PUSH_SOURCE: customer_rows, PRODUCT_PUSH_SOURCE: product_rows})
        self.stats.events_applied += len(out.applied)
        self.stats.duplicates += out.skipped_duplicates
        self.stats.customer_rows_pushed += len(customer_rows)
        self.stats.product_rows_pushed += len(product_rows)

    def _push(self, rows_by_source: dict[str, list[dict[str, object]]]) -> None:
        from features.feast_import import PushMode  # noqa: PLC0415  (Feast: slow to import)

        frames = {}
        for source, rows in rows_by_source.items():
            if not rows:
                continue
            frame = snapshot_frame(rows)
            # one row per entity (the latest): a batch may carry an entity twice (new + re-pushed)
            key = frame.columns[0]
            frames[source] = (
                frame.sort_values("event_timestamp").drop_duplicates(key, keep="last").reset_index(drop=True)
            )
        if not frames:
            return
        started = time.perf_counter()
        self.online.push(frames)  # every view's rows in one write
        online = self.stats.lap("push_online", started)
        if self.settings.feast_push_offline:
            for source, frame in frames.items():
                self.store.push(source, frame, to=PushMode.OFFLINE)
            self.stats.lap("push_offline", online)
        log.debug(
            "pushed",
            extra={
                "rows": {source: len(frame) for source, frame in frames.items()},
                "ms": round((time.perf_counter() - started) * 1e3, 1),
            },
        )

    def run(self) -> PipelineStats:
        """Run until SIGTERM (or until caught up)."""
        self.loop.run()
        log.info("feature pipeline stopped", extra=self.stats.__dict__)
        return self.stats

    def stop(self) -> None:
        """Stop after the current batch."""
        self.loop.stop()
