"""The production profile for real: a purchase becomes a decision, an e-mail and an in-app offer
through Redis, PostgreSQL and the MLflow server; every instance has its own XSELL_HOME and shares
only the servers; killing one of three offer, one of two feature-pipeline and one of two delivery
instances mid-stream rebalances the groups and loses and duplicates no offer, sends no e-mail
twice, holds the caps, and leaves the shared fold state equal to one fold of every purchase."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from itertools import pairwise
from pathlib import Path

import psutil
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from features.state import FoldStateStore
from infra.processes import ServiceProcesses
from services.delivery.render import message_id_for
from services.ingest.replay import produce_events, select_events, with_demo_contacts
from xsell.consumer import wait_for
from xsell.events import EventType, PurchaseEvent, event_id_for
from xsell.history import read_purchase_history
from xsell.offers import Channel, OfferDecision, decision_id_for, offer_groups
from xsell.settings import Settings

from .conftest import SAMPLE

AFTER_SAMPLE = datetime(2011, 12, 10, 9, 0, tzinfo=UTC)
BASKET = ("85123A", "22423")
WAIT_S = 90.0


class OffersTail:
    """Reads `offers` (every partition, no group) from its end at creation."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        partitions = [
            TopicPartition(settings.topic_offers, p)
            for p in self.consumer.partitions_for_topic(settings.topic_offers) or ()
        ]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        for partition in partitions:
            self.consumer.position(partition)  # resolve the end now, before anything is produced
        self.records: list[OfferDecision] = []

    def poll(self) -> int:
        for batch in self.consumer.poll(timeout_ms=100).values():
            self.records.extend(OfferDecision.model_validate_json(r.value) for r in batch)
        return len(self.records)

    def close(self) -> None:
        self.consumer.close()


def api_get(settings: Settings, path: str) -> dict:
    request = urllib.request.Request(
        f"http://{settings.api_host}:{settings.api_port}{path}", headers={"X-API-Key": settings.api_key}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (loopback)
        return json.loads(response.read())


def mails(settings: Settings) -> list:
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(settings.mail_dir.glob("*.eml"))]


def group_members(settings: Settings) -> dict[str, int]:
    """Members of the offer group and how many `purchases` partitions each holds."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        group = admin.describe_groups([settings.offer_group])[settings.offer_group]
    finally:
        admin.close()
    held = {}
    for member in group["members"]:
        assignment = member["member_assignment"]
        topics = (
            assignment.get("assigned_partitions", [])
            if isinstance(assignment, dict)
            else getattr(assignment, "assignment", [])
        )
        held[member["member_id"]] = sum(
            len(t["partitions"]) if isinstance(t, dict) else len(t[1])
            for t in topics
            if (t["topic"] if isinstance(t, dict) else t[0]) == settings.topic_purchases
        )
    return held


def test_the_profile_runs_on_redis_postgres_and_the_mlflow_server(production: Settings) -> None:
    assert production.feast_online_store == "redis" and production.db_url.startswith("postgresql+psycopg2://")
    assert production.tracking_uri.startswith("http://127.0.0.1:")
    assert production.topic_partitions[production.topic_purchases] == 12
    import redis  # noqa: PLC0415  (the production profile's driver: only when it runs)

    host, port = production.redis_url.split(":")
    assert redis.Redis(host=host, port=int(port)).dbsize() > 0  # the backfill materialized into Redis
    from mlflow import MlflowClient  # noqa: PLC0415  (MLflow: slow to import)

    champion = MlflowClient(production.tracking_uri).get_model_version_by_alias(production.model_name, "champion")
    assert champion.version == "1"


def test_a_purchase_yields_its_email_and_in_app_offer(production: Settings, services: ServiceProcesses) -> None:
    names = services.names()
    assert {"offers-1", "offers-2", "offers-3", "features-1", "features-2", "delivery-1", "delivery-2", "api"} <= set(
        names
    )
    assert all(s.running for s in services.status()), [s.name for s in services.status() if not s.running]
    order_id = f"P{uuid.uuid4().hex[:10]}"
    event = PurchaseEvent(
        event_id=event_id_for(order_id, EventType.PURCHASE),
        order_id=order_id,
        customer_id="13089",
        occurred_at=AFTER_SAMPLE,
        lines=tuple({"product_id": p, "quantity": 2, "unit_price": 2.95} for p in BASKET),
        customer_email="shopper-13089@example.org",
        marketing_consent=True,
        channel="online",
    )
    tail = OffersTail(production)
    try:
        produce_events(production, iter([event]))
        assert wait_for(lambda: tail.poll() >= 0 and any(d.event_id == event.event_id for d in tail.records), WAIT_S)
    finally:
        tail.close()
    [decision] = [d for d in tail.records if d.event_id == event.event_id]
    assert decision.decision_id == decision_id_for(event.event_id) and decision.model_version == "1"
    assert decision.channels == (Channel.EMAIL, Channel.IN_APP)
    assert 1 <= len(offer_groups(decision.offers)) <= 3  # three places; a bundle's parts take one

    def mine() -> list:
        return [m for m in mails(production) if m["To"] == event.customer_email]

    assert wait_for(lambda: len(mine()) == 1, WAIT_S)
    assert str(decision.offers[0].name) in mine()[0].get_body(("plain",)).get_content()
    assert wait_for(
        lambda: len(api_get(production, "/v1/customers/13089/offers")["offers"]) >= len(decision.offers), WAIT_S
    )
    listed = api_get(production, "/v1/customers/13089/offers")["offers"]
    assert {o.offer_id for o in decision.offers} <= {o["offer_id"] for o in listed}


def differences(got: dict[str, dict], expected: dict[str, dict]) -> list[tuple[str, dict]]:
    """Per entity whose features differ: {feature: (got, expected)} of the features that do."""
    return [
        (key, {f: (got[key].get(f), value) for f, value in features.items() if got[key].get(f) != value})
        for key, features in expected.items()
        if got.get(key) != features
    ]


def fresh_ids(events: list[PurchaseEvent], round_: int) -> list[PurchaseEvent]:
    """The same purchases as new orders (order id `<order>~<round>`, its event id): the backfill folded the originals."""
    renamed = []
    for event in events:
        order_id = f"{event.order_id}~{round_}"
        renamed.append(
            event.model_copy(update={"order_id": order_id, "event_id": event_id_for(order_id, event.event_type)})
        )
    return renamed


def test_b_killing_one_instance_of_each_service_loses_duplicates_and_double_counts_nothing(
    production: Settings, services: ServiceProcesses
) -> None:
    assert wait_for(lambda: len(group_members(production)) == 3, WAIT_S)  # the group is stable with 3
    homes = {
        Path(psutil.Process(services.pid(n)).environ()["XSELL_HOME"]) for n in ("offers-1", "features-1", "delivery-1")
    }
    assert len(homes) == 3 and all(production.home / "instances" in h.parents for h in homes)  # nothing shared on disk
    events = fresh_ids([with_demo_contacts(e) for e in select_events(read_purchase_history(SAMPLE))][-900:], 1)
    expected = {e.event_id for e in events}
    fold_before = FoldStateStore(production.fold_state_db_url)
    expected_fold = fold_before.load()
    fold_before.close()
    expected_fold.apply(events, snapshot_every_event=False)
    tail = OffersTail(production)
    stream = threading.Thread(
        target=lambda: [  # a steady stream: 30 events every 0.1 s
            (produce_events(production, iter(events[i : i + 30])), time.sleep(0.1)) for i in range(0, len(events), 30)
        ]
    )
    victims = {name: services.pid(name) for name in ("offers-2", "features-1", "delivery-1")}
    assert all(victims.values()), victims
    try:
        stream.start()
        assert wait_for(lambda: tail.poll() >= 150, WAIT_S, 0.0)
        for pid in victims.values():
            psutil.Process(pid).send_signal(signal.SIGKILL)  # mid-stream, no clean shutdown
        decided_at_kill = len({d.event_id for d in tail.records} & expected)
        stream.join(120)
        assert wait_for(lambda: (tail.poll() >= 0) and expected <= {d.event_id for d in tail.records}, WAIT_S)
        time.sleep(2)
        tail.poll()
    finally:
        tail.close()
    assert decided_at_kill < len(expected), "killed too late: every decision was already out"
    assert wait_for(lambda: sorted(group_members(production).values()) in ([6, 6], [5, 7], [4, 8]), WAIT_S)
    assert sum(group_members(production).values()) == 12 and len(group_members(production)) == 2

    records = [d for d in tail.records if d.event_id in expected]
    assert {d.decision_id for d in records} == {decision_id_for(e) for e in expected}  # none lost
    by_id: dict[str, OfferDecision] = {}
    for decision in records:  # a re-delivered event re-emits the stored decision, never a new one
        assert by_id.setdefault(decision.decision_id, decision) == decision
    re_emitted = len(records) - len(by_id)

    emailed = {
        message_id_for(d.decision_id, production.mail_from) for d in by_id.values() if Channel.EMAIL in d.channels
    }

    def sent() -> Counter:
        return Counter(m["Message-ID"] for m in mails(production) if m["Message-ID"] in emailed)

    assert wait_for(lambda: len(sent()) == len(emailed), WAIT_S)
    # SMTP's own limit (docs/reliability.md): a sender killed after the server took a message and
    # before the outbox recorded it cannot know it went out, so it goes again, at most one per kill
    assert sum(count - 1 for count in sent().values()) <= 1
    mailed_at: dict[str, list[datetime]] = {}
    for decision in by_id.values():
        if Channel.EMAIL in decision.channels and decision.customer_id:
            mailed_at.setdefault(decision.customer_id, []).append(decision.occurred_at)
    too_close = {c: t for c, t in mailed_at.items() if any(b - a < timedelta(hours=24) for a, b in pairwise(sorted(t)))}
    assert not too_close  # one e-mail a day per customer, whichever instance decided

    def fold_settled() -> bool:
        store = FoldStateStore(production.fold_state_db_url)
        try:
            return expected <= store.load().applied
        finally:
            store.close()

    assert wait_for(fold_settled, WAIT_S, 1.0)
    store = FoldStateStore(production.fold_state_db_url)
    after = store.load()
    store.close()
    touched_customers = {e.customer_id for e in events if e.customer_id}
    touched_products = {line.product_id for e in events for line in e.lines}
    percentiles, expected_percentiles = after.percentiles(), expected_fold.percentiles()
    customers_off = differences(
        {c: after.customers[c].features() for c in touched_customers},
        {c: expected_fold.customers[c].features() for c in touched_customers},
    )
    products_off = differences(
        {p: after.products[p].features(percentiles.get(p, 0.5)) for p in touched_products},
        {p: expected_fold.products[p].features(expected_percentiles.get(p, 0.5)) for p in touched_products},
    )
    assert not customers_off and not products_off, (len(customers_off), len(products_off), products_off[:5])
    print(
        f"\n{len(expected)} events, {len(by_id)} decisions, {re_emitted} re-emitted after the kills, "
        f"{len(emailed)} e-mails, offers group now {group_members(production)}, "
        f"{len(touched_customers)} customers and {len(touched_products)} products as one fold has them"
    )
