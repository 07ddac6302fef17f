"""The production profile for real: a purchase becomes a decision, an e-mail and an in-app offer
through Redis, PostgreSQL and the MLflow server; killing one of three offer instances mid-stream
rebalances the group and loses and duplicates no offer."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy

import psutil
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

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
    assert {"offers-1", "offers-2", "offers-3", "delivery-1", "delivery-2", "api"} <= set(names)
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


def test_b_killing_one_of_three_offer_instances_loses_and_duplicates_no_offer(
    production: Settings, services: ServiceProcesses
) -> None:
    assert wait_for(lambda: len(group_members(production)) == 3, WAIT_S)  # the group is stable with 3
    events = [with_demo_contacts(e) for e in select_events(read_purchase_history(SAMPLE))][-900:]
    expected = {e.event_id for e in events}
    tail = OffersTail(production)
    stream = threading.Thread(
        target=lambda: [  # a steady stream: 30 events every 0.1 s
            (produce_events(production, iter(events[i : i + 30])), time.sleep(0.1)) for i in range(0, len(events), 30)
        ]
    )
    victim = services.pid("offers-2")
    assert victim is not None
    try:
        stream.start()
        assert wait_for(lambda: tail.poll() >= 150, WAIT_S, 0.0)
        psutil.Process(victim).send_signal(signal.SIGKILL)  # mid-stream, no clean shutdown
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
    assert max(sent().values()) == 1  # no e-mail twice, though 2 delivery instances read the re-emissions
    print(
        f"\n{len(expected)} events, {len(by_id)} decisions, {re_emitted} re-emitted after the kill, "
        f"{len(emailed)} e-mails, offers group now {group_members(production)}"
    )
