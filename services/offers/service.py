"""The real-time offer service: a consumer group on `purchases` that answers every purchase with
one `OfferDecision` on `offers`.

Per micro-batch: parse (records ingestion dead-letters are skipped), find events already decided
(re-emit their stored decision: same ids), rank the new ones with the champion in one batch
(candidates, online features, one predict) and propose their "complete the set" bundles, apply the
business rules in event order (so caps see earlier decisions of the same batch), record the
decisions and send them with acks=all. The loop handles the next batch while the broker
acknowledges them, and commits a batch's offsets only once every one of its decisions is
acknowledged. At-least-once in, idempotent out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kafka import KafkaProducer

from features.online import OnlineFeatureReader
from features.state import FoldStateStore
from features.store import open_feature_store
from services.messaging import durable_producer
from services.offers.champion import ChampionWatcher
from services.offers.rules import CustomerContext, OfferRules, decide_events
from services.offers.scoring import ProductFeatureCache, propose_bundles, rank_batch
from services.offers.state import OfferStateStore
from services.preferences import PreferenceStore
from xsell.consumer import Completion, ConsumerLoop, Record
from xsell.events import EventType, PurchaseEvent, valid_events
from xsell.offers import OfferDecision
from xsell.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class OfferStats:
    """Counts since start."""

    events: int = 0
    decisions: int = 0
    re_emitted: int = 0
    offers: int = 0
    skipped_invalid: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    suppressed_by_rule: dict[str, int] = field(default_factory=dict)
    no_offer_by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, decision: OfferDecision) -> None:
        """Count one new decision."""
        self.decisions += 1
        self.offers += len(decision.offers)
        for offer in decision.offers:
            self.by_type[offer.offer_type] = self.by_type.get(offer.offer_type, 0) + 1
        for suppression in decision.suppressed:
            self.suppressed_by_rule[suppression.rule] = self.suppressed_by_rule.get(suppression.rule, 0) + 1
        if decision.no_offer_reason:
            self.no_offer_by_reason[decision.no_offer_reason] = (
                self.no_offer_by_reason.get(decision.no_offer_reason, 0) + 1
            )


class OfferService:
    """Consumer group `settings.offer_group` on `purchases`, producing to `offers`.

    Constructing it opens nothing: ``run`` (or ``opened``, for a caller that drives
    ``decide_batch`` itself) opens the stores, the feature reader and the champion watcher, in the
    thread that runs it, and closes them on the way out. ``ready`` is set once ``run`` has them open,
    the champion loaded and the producer connected, just before it joins the consumer group (and
    cleared when ``run`` ends), so a caller running the service in a thread can wait for it.
    """

    state: OfferStateStore
    preferences: PreferenceStore
    fold_state: FoldStateStore
    reader: OnlineFeatureReader
    products: ProductFeatureCache
    champion: ChampionWatcher

    def __init__(self, settings: Settings, until_caught_up: bool = False) -> None:
        """Keep the configuration; nothing is opened here (see the class docstring)."""
        self.settings = settings
        self.rules = OfferRules.from_settings(settings)
        self.stats = OfferStats()
        self.ready = threading.Event()
        self._producer: KafkaProducer | None = None
        self.loop = ConsumerLoop(
            settings,
            group_id=settings.offer_group,
            topics=[settings.topic_purchases],
            handler=self.handle,
            client_id="xsell-offers",
            until_caught_up=until_caught_up,
        )

    @contextmanager
    def opened(self) -> Iterator[OfferService]:
        """The service with its stores, feature reader and champion watcher open, for a caller
        that drives ``decide_batch`` itself (the backtest, tests); all closed on exit."""
        with ExitStack() as stack:
            self._open(stack)
            yield self

    def _open(self, stack: ExitStack) -> None:
        """Open what a batch reads and writes; ``stack`` closes each on the way out."""
        settings = self.settings
        self.state = OfferStateStore(settings.home / "offers" / "state.db")
        stack.callback(self.state.close)
        self.preferences = PreferenceStore(settings.db_url)
        self.fold_state = FoldStateStore(settings.feast_dir / "fold_state.db")
        stack.callback(self.fold_state.close)
        self.reader = OnlineFeatureReader(open_feature_store(settings))
        self.products = ProductFeatureCache(self.reader, settings.product_cache_ttl_s)
        self.champion = ChampionWatcher(settings)
        stack.callback(self.champion.close)

    def handle(self, records: list[Record]) -> Completion:
        """Decide, record and send one batch; the loop calls the returned completion (which waits
        for the broker's acknowledgements) before it commits the batch's offsets."""
        events, skipped = valid_events((r.value for r in records), self.settings.max_event_bytes)
        self.stats.skipped_invalid += skipped
        self.stats.events += len(events)
        decisions = self.decide_batch(events)
        payloads = [decision.to_bytes() for decision in decisions]  # serialized once, stored and produced
        self.state.record(decisions, payloads)
        return self._produce(decisions, payloads)

    def decide_batch(self, events: list[PurchaseEvent]) -> list[OfferDecision]:
        """Decisions for a batch, in event order: stored ones for events seen before, new ones else."""
        known = self.state.decided(e.event_id for e in events)
        fresh = [e for e in {e.event_id: e for e in events}.values() if e.event_id not in known]
        for event in fresh:
            self.products.invalidate([line.product_id for line in event.lines])
        champion = self.champion.current()
        customers = [e.customer_id for e in fresh if e.customer_id]
        first_seen: dict[str, datetime] = {}
        for event in fresh:
            if event.customer_id and event.customer_id not in first_seen:
                first_seen[event.customer_id] = event.occurred_at
        owned = self.fold_state.owned_products(customers, as_of=first_seen)
        scorable = [e for e in fresh if e.customer_id and e.event_type is EventType.PURCHASE]
        ranked = (
            rank_batch(
                champion,
                scorable,
                owned,
                self.reader,
                self.products,
                predict_threads=self.settings.predict_threads,
                candidates_per_event=self.settings.serving_candidates,
            )
            if champion and scorable
            else {}
        )
        bundles = (
            propose_bundles(champion.bundles, scorable, ranked, self.rules.bundle_max_items)
            if champion and self.rules.bundles
            else {}
        )
        unsubscribed = self.preferences.unsubscribed(customers)
        since = min((e.occurred_at for e in fresh), default=datetime.now(UTC)) - timedelta(days=7)
        email_times = self.state.email_times(customers, since)
        contexts = {
            c: CustomerContext(
                owned=frozenset(owned.get(c, ())),
                unsubscribed=c in unsubscribed,
                email_times=tuple(email_times.get(c, ())),
            )
            for c in dict.fromkeys(customers)
        }
        decided = decide_events(
            fresh,
            ranked if champion else None,
            contexts,
            self.rules,
            str(champion.version) if champion else None,
            datetime.now(UTC),
            bundles,
        )
        new = {decision.event_id: decision for decision in decided}
        for decision in decided:
            self.stats.add(decision)
        self.stats.re_emitted += len(known)
        return [known.get(e.event_id) or new[e.event_id] for e in events]

    def _produce(self, decisions: list[OfferDecision], payloads: list[bytes]) -> Completion:
        """Send the decisions; the completion waits until the broker has acknowledged all of them."""
        assert self._producer is not None, "handle() runs inside run()"
        futures = [
            self._producer.send(self.settings.topic_offers, key=d.key(), value=payload)
            for d, payload in zip(decisions, payloads, strict=True)
        ]

        def acknowledged() -> None:
            for future in futures:
                future.get()  # a refused decision fails the batch: it is not committed and comes back
            if decisions:
                latency = [(time.time() - d.decided_at.timestamp()) * 1e3 for d in decisions]
                log.debug("decisions produced", extra={"count": len(decisions), "max_ms": round(max(latency), 1)})

        return acknowledged

    def run(self) -> OfferStats:
        """Open everything, run until SIGTERM (or until caught up), close everything."""
        with self.opened(), ExitStack() as stack:
            self._producer = durable_producer(
                self.settings,
                "xsell-offers-producer",
                linger_ms=2,
                # a batch's decisions (about 2 KB each) leave in a few requests: the default 16 KB
                # batches would flush them in one round trip per eight decisions
                batch_size=512 * 1024,
                max_request_size=4 * 1024 * 1024,
            )
            stack.callback(self._producer.close)
            self.champion.current()  # load the model before joining the group, not on the first batch
            stack.callback(self.ready.clear)
            self.ready.set()
            self.loop.run()
        log.info("offer service stopped", extra=self.stats.__dict__)
        return self.stats

    def stop(self) -> None:
        """Stop after the current batch."""
        self.loop.stop()
