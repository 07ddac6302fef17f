"""The real-time offer service: a consumer group on `purchases` that answers every purchase with
one `OfferDecision` on `offers`.

Per micro-batch: parse (records ingestion dead-letters are skipped), find events already decided
(re-emit their stored decision: same ids), rank the new ones with the champion in one batch (or,
during a live experiment, each customer's events with the model of their variant:
`services.offers.routing`; each decision records its variant)
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
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kafka import KafkaProducer

from features.online import OnlineFeatureReader
from features.state import FoldStateStore
from features.store import open_feature_store
from models.champion import Champion
from services.messaging import durable_producer
from services.offers.champion import ChampionWatcher
from services.offers.routing import experiment_id_for, variant_for
from services.offers.rules import CustomerContext, OfferRules, cap_rule, decide_events, without_email
from services.offers.scoring import ProductFeatureCache, propose_bundles, rank_batch
from services.offers.state import OfferStateStore
from services.preferences import PreferenceStore
from xsell.consumer import Completion, ConsumerLoop, Record
from xsell.events import EventType, PurchaseEvent, valid_events
from xsell.metrics import DECISIONS, EVENT_TO_OFFER_SECONDS, OFFERS, SUPPRESSIONS
from xsell.offers import OfferDecision, Variant
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


def observe(decisions: list[OfferDecision], record_ms: dict[str, int]) -> None:
    """Count a batch's new decisions on /metrics: outcome, offers by type, suppressions by rule,
    and the time from each purchase record's Kafka timestamp to its decision (re-emitted stored
    decisions, decided before, are left out: their decided_at is older than their record)."""
    for decision in decisions:
        at_ms = record_ms.get(decision.event_id)
        if at_ms is None or decision.decided_at.timestamp() * 1e3 < at_ms:
            continue
        DECISIONS.labels("offered" if decision.offers else decision.no_offer_reason or "none").inc()
        for offer in decision.offers:
            OFFERS.labels(str(offer.offer_type)).inc()
        for suppression in decision.suppressed:
            SUPPRESSIONS.labels(suppression.rule).inc()
        EVENT_TO_OFFER_SECONDS.observe(max(0.0, decision.decided_at.timestamp() - at_ms / 1e3))


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
    challenger: ChampionWatcher | None  # the live experiment's model, when challenger_share > 0

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
        self.state = OfferStateStore(settings.db_url)
        stack.callback(self.state.close)
        self.preferences = PreferenceStore(settings.db_url)
        self.fold_state = FoldStateStore(settings.fold_state_db_url)
        stack.callback(self.fold_state.close)
        self.reader = OnlineFeatureReader(open_feature_store(settings))
        self.products = ProductFeatureCache(self.reader, settings.product_cache_ttl_s)
        self.champion = ChampionWatcher(settings)
        stack.callback(self.champion.close)
        self.challenger = None
        if settings.challenger_share > 0:
            self.challenger = ChampionWatcher(settings, alias=settings.challenger_alias)
            stack.callback(self.challenger.close)

    def handle(self, records: list[Record]) -> Completion:
        """Decide, record and send one batch; the loop calls the returned completion (which waits
        for the broker's acknowledgements) before it commits the batch's offsets."""
        positions: list[int] = []
        events, skipped = valid_events((r.value for r in records), self.settings.max_event_bytes, positions)
        self.stats.skipped_invalid += skipped
        self.stats.events += len(events)
        decided_before = self.stats.decisions
        decisions, payloads = self.state.record(  # serialized once, stored and produced
            self.decide_batch(events), cap=self._cap, downgrade=without_email
        )
        if self.stats.decisions > decided_before:
            observe(decisions, {e.event_id: records[p].timestamp for e, p in zip(events, positions, strict=True)})
        return self._produce(decisions, payloads)

    def decide_batch(self, events: list[PurchaseEvent]) -> list[OfferDecision]:
        """Decisions for a batch, in event order: stored ones for events seen before, new ones else."""
        known = self.state.decided(e.event_id for e in events)
        fresh = [e for e in {e.event_id: e for e in events}.values() if e.event_id not in known]
        for event in fresh:
            self.products.invalidate([line.product_id for line in event.lines])
        customers = [e.customer_id for e in fresh if e.customer_id]
        first_seen: dict[str, datetime] = {}
        for event in fresh:
            if event.customer_id and event.customer_id not in first_seen:
                first_seen[event.customer_id] = event.occurred_at
        owned = self.fold_state.owned_products(customers, as_of=first_seen)
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
        decided = self.decide_new(fresh, contexts, owned, self.rules)
        new = {decision.event_id: decision for decision in decided}
        for decision in decided:
            self.stats.add(decision)
        self.stats.re_emitted += len(known)
        return [known.get(e.event_id) or new[e.event_id] for e in events]

    def decide_new(
        self,
        events: list[PurchaseEvent],
        contexts: dict[str, CustomerContext],
        owned: dict[str, tuple[str, ...]],
        rules: OfferRules,
        rules_of: Mapping[str, OfferRules] | None = None,
    ) -> list[OfferDecision]:
        """Decisions for events not decided before, grouped by the model of each customer's variant:
        candidates, online features, one predict per model, bundles, then the rules in event order
        (``rules``, or ``rules_of[event id]`` where given: requests of the checkout API each have
        their own limit). What the offer service does per batch and the checkout API per batch of
        requests (``rules.on_request``)."""
        decided: list[OfferDecision] = []
        for variant, model, events_of_variant in self._variants(events):
            scorable = [
                e
                for e in events_of_variant
                if (e.customer_id or rules.on_request) and e.event_type is EventType.PURCHASE
            ]
            ranked = (
                rank_batch(
                    model,
                    scorable,
                    owned,
                    self.reader,
                    self.products,
                    predict_threads=self.settings.recommendation_predict_threads
                    if rules.on_request
                    else self.settings.predict_threads,
                    candidates_per_event=self.settings.serving_candidates,
                )
                if model and scorable
                else {}
            )
            bundles = (
                propose_bundles(model.bundles, scorable, ranked, rules.bundle_max_items)
                if model and rules.bundles
                else {}
            )
            by_rules: dict[OfferRules, list[PurchaseEvent]] = {}
            for event in events_of_variant:  # rules apply in event order within each group
                by_rules.setdefault((rules_of or {}).get(event.event_id, rules), []).append(event)
            for group_rules, group in by_rules.items():
                decisions = decide_events(
                    group,
                    ranked if model else None,
                    contexts,
                    group_rules,
                    str(model.version) if model else None,
                    datetime.now(UTC),
                    bundles,
                )
                decided += [d.model_copy(update={"variant": variant}) if model else d for d in decisions]
        return decided

    def _cap(self, decision: OfferDecision, email_times: tuple[datetime, ...]) -> str | None:
        """The cap an e-mail of ``decision`` would break, given the customer's e-mails stored so far."""
        return cap_rule(decision.occurred_at, email_times, self.rules)

    def _variants(self, events: list[PurchaseEvent]) -> list[tuple[Variant, Champion | None, list[PurchaseEvent]]]:
        """The events each model decides: all the champion's, unless a challenger is loaded and
        has a share; then each customer's variant (`services.offers.routing`) picks the model.
        Events without a customer go to the champion (they get no offers either way)."""
        champion = self.champion.current()
        challenger = self.challenger.current() if self.challenger else None
        if champion is None or challenger is None:
            return [(Variant.CHAMPION, champion, events)]
        experiment = experiment_id_for(self.settings.experiment_id, champion.version, challenger.version)
        split: dict[Variant, list[PurchaseEvent]] = {Variant.CHAMPION: [], Variant.CHALLENGER: []}
        for event in events:
            variant = (
                variant_for(event.customer_id, experiment, self.settings.challenger_share)
                if event.customer_id
                else Variant.CHAMPION
            )
            split[variant].append(event)
        models = {Variant.CHAMPION: champion, Variant.CHALLENGER: challenger}
        return [(variant, models[variant], chosen) for variant, chosen in split.items() if chosen]

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
            self.champion.current()  # load the models before joining the group, not on the first batch
            if self.challenger is not None:
                self.challenger.current()
            stack.callback(self.ready.clear)
            self.ready.set()
            self.loop.run()
        log.info("offer service stopped", extra=self.stats.__dict__)
        return self.stats

    def stop(self) -> None:
        """Stop after the current batch."""
        self.loop.stop()
