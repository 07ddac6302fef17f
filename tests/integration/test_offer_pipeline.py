"""The offer pipeline end to end against real services: a ranker trained once on the shipped sample
(real Feast store, real MLflow SQLite store), the real broker, a real SMTP server (aiosmtpd) and the
API. A purchase becomes a decision on `offers`, an e-mail and an in-app offer; caps, consent and
duplicates hold; a `kill -9` of the offer service loses and duplicates nothing; a newly promoted
champion is served without a restart; `XSELL_SERVING_CANDIDATES` bounds what is scored; a
challenger decides for its share of customers, and caps hold across the two variants. The checkout
API's offers on request agree with the offer service's for the same basket, customer and model, never
offer the cart or what is owned, and are recorded on `offers`; purchases over HTTP are acknowledged,
idempotent under retries, and refused with 503 (nothing produced) while the broker is down.

The trained home (feature store, MLflow, offer state) is shared by the module; each test has its own
topics, consumer groups, database and mail folder, and its own customers (caps are per customer).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Protocol

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from features.archive import PurchaseArchive
from features.catalog import build_catalog, name_profile, upgrade_step
from features.pipeline import FeaturePipeline
from infra.kafka.broker import free_port
from infra.kafka.topics import ensure_topics
from infra.smtp_capture import MailDirHandler
from models.registry import open_tracking
from services.api.app import create_app
from services.delivery.render import message_id_for
from services.delivery.service import DeliveryService
from services.inbox.consumer import InboxService
from services.ingest.replay import produce_events, select_events
from services.offers.audit import run_audit
from services.offers.recommend import (
    OfferRequest,
    Recommender,
    RecommenderProcess,
    RecommenderUnavailable,
    RequestItem,
)
from services.offers.routing import experiment_id_for, variant_for
from services.offers.service import OfferService
from tests.services.api.factories import RecordingPublisher
from tests.streams import own_groups, own_topics
from training import commands
from xsell.consumer import wait_for
from xsell.events import EventType, PurchaseEvent, event_id_for
from xsell.history import read_purchase_history
from xsell.metrics import MODEL_VERSION
from xsell.offers import Channel, OfferContext, OfferDecision, Variant, decision_id_for, offer_groups
from xsell.price_band import DEFAULT_PRICE_BAND
from xsell.settings import REPO_ROOT, Settings

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"
AFTER_SAMPLE = datetime(2011, 12, 10, 9, 0, tzinfo=UTC)  # the sample's last order is 2011-12-09 12:49
BASKET = ("85123A", "22423")  # WHITE HANGING HEART T-LIGHT HOLDER, REGENCY CAKESTAND 3 TIER
FAST_DELIVERY = {"retry_base_s": 0.2, "retry_max_s": 1.0, "tick_s": 0.1, "smtp_timeout_s": 5.0}
WAIT_S = 90.0  # how long a test waits for the services to start (champion, Feast), and then to catch up


class Service(Protocol):
    """What the helpers need of a consumer service."""

    def run(self) -> object: ...

    def stop(self) -> None: ...


@pytest.fixture(scope="module")
def trained(broker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings on the session broker whose home holds a ranker trained on the sample (the champion)."""
    home = tmp_path_factory.mktemp("offer-pipeline-home")
    suffix = uuid.uuid4().hex[:8]
    settings = broker_settings.model_copy(
        update={
            "home": home,
            **own_topics(f"pipeline-{suffix}"),
            "log_level": "WARNING",
        }
    )
    ensure_topics(settings)
    summary = commands.train(settings, SAMPLE)
    assert summary["model_version"] == 1 and summary["champion"] is True
    return settings


@pytest.fixture
def settings(trained: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The trained home with this test's own topics, groups, database and SMTP port."""
    suffix = f"{request.node.name[:30]}-{uuid.uuid4().hex[:8]}"
    settings = trained.model_copy(
        update={
            **own_topics(suffix),
            **own_groups(suffix, "offer", "delivery", "inbox"),
            "database_url": f"sqlite:///{tmp_path / 'xsell.db'}",
            "smtp_port": free_port(),
            "public_base_url": "https://shop.example",
            "recommendation_timeout_s": 60.0,  # the first answer waits for the recommender process to load the model
        }
    )
    ensure_topics(settings)
    return settings


@pytest.fixture
def mail_dir(settings: Settings, tmp_path: Path) -> Iterator[Path]:
    """A real aiosmtpd server on the settings' SMTP port storing .eml files in this test's folder."""
    folder = tmp_path / "mail"
    controller = Controller(MailDirHandler(folder), hostname=settings.smtp_host, port=settings.smtp_port)
    controller.start()
    yield folder
    controller.stop()


def purchase(
    customer_id: str,
    at: datetime,
    *,
    consent: bool = True,
    products: tuple[str, ...] = BASKET,
    order_id: str | None = None,
) -> PurchaseEvent:
    """A purchase by a customer of the sample, with an e-mail address."""
    order_id = order_id or f"T{uuid.uuid4().hex[:10]}"
    return PurchaseEvent(
        event_id=event_id_for(order_id, EventType.PURCHASE),
        order_id=order_id,
        customer_id=customer_id,
        occurred_at=at,
        lines=tuple({"product_id": p, "quantity": 2, "unit_price": 2.95} for p in products),
        customer_email=f"shopper-{customer_id}@example.org",
        marketing_consent=consent,
        channel="online",
    )


def produce(settings: Settings, events: list[PurchaseEvent]) -> None:
    """Produce events to this test's `purchases` with acks=all."""
    produce_events(settings, iter(events))


@contextmanager
def running(*services: Service) -> Iterator[None]:
    """Run services in threads, and wait for each that has a ``ready`` event (the offer service:
    stores open, champion loaded) before the test goes on; stop them gracefully on exit and
    re-raise the first error."""
    errors: list[BaseException] = []

    def target(service: Service) -> None:
        try:
            service.run()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread below
            errors.append(error)

    threads = [threading.Thread(target=target, args=(s,), name=f"{type(s).__name__}-under-test") for s in services]
    for thread in threads:
        thread.start()
    try:
        events = [ready for s in services if (ready := getattr(s, "ready", None)) is not None]
        started = wait_for(lambda: all(e.is_set() for e in events) or bool(errors), WAIT_S)
        assert started and not errors, "a service did not start (its error follows, if it raised one)"
        yield
    finally:
        for service in services:
            service.stop()
        for thread in threads:
            thread.join(30)
            assert not thread.is_alive(), f"{thread.name} did not stop"
        if errors:  # here, so that a service's error shows even when the test's own check failed first
            raise errors[0]


def pipeline(settings: Settings) -> tuple[OfferService, DeliveryService, InboxService]:
    """The three consumers of the pipeline, not started."""
    return OfferService(settings), DeliveryService(settings, **FAST_DELIVERY), InboxService(settings)


def decisions(read_topic: Callable[..., list], settings: Settings, expected: int) -> list[OfferDecision]:
    """The decisions on this test's `offers`, once `expected` are there."""
    return [OfferDecision.model_validate_json(r.value) for r in read_topic(settings.topic_offers, expected, WAIT_S)]


def mails(folder: Path) -> list[Message]:
    """Every message the SMTP server stored."""
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(folder.glob("*.eml"))]


def in_app(client: TestClient, settings: Settings, customer_id: str) -> list[dict]:
    """The customer's in-app offers as the API lists them."""
    response = client.get(f"/v1/customers/{customer_id}/offers", headers={"X-API-Key": settings.api_key})
    assert response.status_code == 200
    return response.json()["offers"]


def test_a_purchase_yields_a_decision_an_email_and_an_in_app_offer(
    settings: Settings, mail_dir: Path, read_topic: Callable[..., list]
) -> None:
    event = purchase("13089", AFTER_SAMPLE)
    offers, delivery, inbox = pipeline(settings)
    with running(offers, delivery, inbox), TestClient(create_app(settings)) as client:
        produce(settings, [event])
        [decision] = decisions(read_topic, settings, expected=1)
        assert wait_for(lambda: len(mails(mail_dir)) == 1, WAIT_S)
        assert wait_for(lambda: len(in_app(client, settings, "13089")) == len(decision.offers), WAIT_S)
        listed = in_app(client, settings, "13089")

    assert (decision.event_id, decision.decision_id) == (event.event_id, decision_id_for(event.event_id))
    assert decision.model_version == "1" and decision.no_offer_reason is None
    assert decision.channels == (Channel.EMAIL, Channel.IN_APP)
    assert 1 <= len(offer_groups(decision.offers)) <= 3  # three places; a bundle's parts take one
    bought = {line.product_id for line in event.lines}
    assert not bought & {o.product_id for o in decision.offers}

    [mail] = mails(mail_dir)
    assert mail["Message-ID"] == message_id_for(decision.decision_id, settings.mail_from)
    assert mail["To"] == event.customer_email
    assert str(decision.offers[0].name) in mail.get_body(("plain",)).get_content()

    assert sorted(o["offer_id"] for o in listed) == sorted(o.offer_id for o in decision.offers)
    assert {o["decision_id"] for o in listed} == {decision.decision_id}
    assert offers.stats.decisions == 1 and delivery.stats.sent == 1


def test_b_frequency_cap_and_consent_hold_back_emails_not_in_app_offers(
    settings: Settings, mail_dir: Path, read_topic: Callable[..., list]
) -> None:
    first = purchase("15039", AFTER_SAMPLE)
    second = purchase("15039", AFTER_SAMPLE + timedelta(hours=2))  # within 24 h of the first
    no_consent = purchase("15005", AFTER_SAMPLE, consent=False)
    offers, delivery, inbox = pipeline(settings)
    with running(offers, delivery, inbox), TestClient(create_app(settings)) as client:
        produce(settings, [first, second, no_consent])
        by_event = {d.event_id: d for d in decisions(read_topic, settings, expected=3)}
        assert wait_for(lambda: delivery.stats.decisions == 3 and len(mails(mail_dir)) == 1, WAIT_S)
        assert wait_for(lambda: inbox.summary.decisions_stored == 3, WAIT_S)
        listed = in_app(client, settings, "15039")
        listed_no_consent = in_app(client, settings, "15005")

    capped, silent = by_event[second.event_id], by_event[no_consent.event_id]
    assert by_event[first.event_id].channels == (Channel.EMAIL, Channel.IN_APP)
    assert capped.channels == (Channel.IN_APP,) and capped.offers
    assert [s.rule for s in capped.suppressed if s.product_id is None] == ["frequency_cap_24h"]
    assert silent.channels == (Channel.IN_APP,) and silent.offers
    assert [s.rule for s in silent.suppressed if s.product_id is None] == ["no_consent"]

    [mail] = mails(mail_dir)
    assert mail["Message-ID"] == message_id_for(by_event[first.event_id].decision_id, settings.mail_from)
    assert delivery.stats.queued == 1 and delivery.stats.skipped == {"no_email_channel": 2}
    assert {o["decision_id"] for o in listed} == {by_event[first.event_id].decision_id, capped.decision_id}
    assert {o["decision_id"] for o in listed_no_consent} == {silent.decision_id}


def test_c_the_same_event_twice_is_one_decision_and_one_email(
    settings: Settings, mail_dir: Path, read_topic: Callable[..., list]
) -> None:
    event = purchase("14056", AFTER_SAMPLE)
    offers, delivery, inbox = pipeline(settings)
    with running(offers, delivery, inbox):
        produce(settings, [event])
        assert wait_for(lambda: offers.stats.decisions == 1, WAIT_S)
        produce(settings, [event])  # a producer retry or a replay, after the decision was recorded
        records = decisions(read_topic, settings, expected=2)
        assert wait_for(lambda: delivery.stats.decisions == 2 and len(mails(mail_dir)) >= 1, WAIT_S)
        assert wait_for(lambda: inbox.summary.decisions_stored == 2, WAIT_S)

    assert len(records) == 2 and records[0] == records[1]  # re-emitted as stored: same ids, same content
    assert records[0].decision_id == decision_id_for(event.event_id) and records[0].offers
    assert (offers.stats.decisions, offers.stats.re_emitted) == (1, 1)
    assert [m["Message-ID"] for m in mails(mail_dir)] == [message_id_for(records[0].decision_id, settings.mail_from)]
    assert (delivery.stats.queued, delivery.stats.duplicates, delivery.stats.sent) == (1, 1, 1)
    assert inbox.summary.offers_new == len(records[0].offers)


@contextmanager
def tailing(settings: Settings) -> Iterator[Callable[[], int]]:
    """A reader of every partition of `offers` (no group); yields `count()`: records seen so far."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(settings.topic_offers, p) for p in range(settings.offers_partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen = [0]

    def count() -> int:
        seen[0] += sum(len(batch) for batch in consumer.poll(timeout_ms=20).values())
        return seen[0]

    try:
        yield count
    finally:
        consumer.close()


def test_d_kill_9_then_restart_misses_and_duplicates_no_decision(
    settings: Settings, read_topic: Callable[..., list], tmp_path: Path
) -> None:
    events = list(select_events(read_purchase_history(SAMPLE)))[-300:]
    produce(settings, events)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("XSELL_", "MLFLOW_"))},
        "XSELL_HOME": str(settings.home),
        "XSELL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "XSELL_TOPIC_PURCHASES": settings.topic_purchases,
        "XSELL_TOPIC_PURCHASES_DLQ": settings.topic_purchases_dlq,
        "XSELL_TOPIC_OFFERS": settings.topic_offers,
        "XSELL_TOPIC_OFFER_FEEDBACK": settings.topic_offer_feedback,
        "XSELL_OFFER_GROUP": settings.offer_group,
        "XSELL_DATABASE_URL": str(settings.database_url),
        "XSELL_POLL_MAX_RECORDS": "20",
        "XSELL_LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "-m", "cli.main", "offers"]
    with (tmp_path / "first.log").open("wb") as log, tailing(settings) as seen:
        first = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:  # kill as soon as the first batch is out, mid-stream
            assert wait_for(lambda: seen() >= 20 or first.poll() is not None, 90, 0.0)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        time.sleep(0.5)
        assert seen() < len(events), "killed too late: every decision was already out"

    restarted = subprocess.run(
        [*command, "--until-caught-up"], env=env, cwd=REPO_ROOT, capture_output=True, timeout=120, check=False
    )
    assert restarted.returncode == 0, restarted.stderr.decode()[-3000:]

    records = [
        OfferDecision.model_validate_json(r.value) for r in read_topic(settings.topic_offers, len(events), WAIT_S)
    ]
    assert {d.event_id for d in records} == {e.event_id for e in events}
    assert {d.decision_id for d in records} == {decision_id_for(e.event_id) for e in events}
    by_id: dict[str, OfferDecision] = {}
    for decision in records:  # duplicates only as identical re-emissions of the stored decision
        assert by_id.setdefault(decision.decision_id, decision) == decision
    assert all(d.model_version == "1" for d in records)


def test_e_a_promoted_champion_is_served_without_restart(settings: Settings, read_topic: Callable[..., list]) -> None:
    settings = settings.model_copy(update={"model_refresh_s": 1.0})
    offers = OfferService(settings)
    before, after = purchase("14769", AFTER_SAMPLE), purchase("14769", AFTER_SAMPLE + timedelta(hours=1))
    with running(offers):
        produce(settings, [before])
        assert wait_for(lambda: offers.stats.decisions == 1, WAIT_S)
        client = open_tracking(settings)
        current = client.get_model_version(settings.model_name, "1")
        again = client.create_model_version(settings.model_name, current.source, run_id=current.run_id)
        promoted = commands.promote(settings, int(again.version), force=True, reason="integration test")
        assert promoted["promoted"] is True
        served = lambda: getattr(offers.champion.champion, "version", None) == 2  # noqa: E731
        assert wait_for(served, WAIT_S)  # the background watcher loaded the new alias, no restart
        produce(settings, [after])
        assert wait_for(lambda: offers.stats.decisions == 2, WAIT_S)
    by_event = {d.event_id: d for d in decisions(read_topic, settings, expected=2)}
    assert by_event[before.event_id].model_version == "1"
    assert by_event[after.event_id].model_version == str(again.version) == "2"
    assert by_event[after.event_id].offers
    assert offers.champion.champion is not None and offers.champion.champion.version == 2


def test_f_serving_candidates_bounds_what_is_scored(settings: Settings) -> None:
    event = purchase("14769", AFTER_SAMPLE)

    def scored(service: OfferService) -> set[str]:
        """The products the decision ranked: offered, or suppressed by a rule about a product."""
        with service.opened():
            (decision,) = service.decide_batch([event])
        return {o.product_id for o in decision.offers} | {s.product_id for s in decision.suppressed if s.product_id}

    everything = scored(OfferService(settings))
    two = scored(OfferService(settings.model_copy(update={"serving_candidates": 2})))
    assert len(everything) > 2
    assert 0 < len(two) <= 2


def _with_a_step_up(lines: pd.DataFrame, paid: float) -> list[str]:
    """Products of ``lines`` with a real step up (`features.catalog.upgrade_step`: larger, a bigger
    pack, premium, more included) of their kind, in the price band and dearer than ``paid``."""
    catalog = build_catalog(lines)
    catalog = catalog[~catalog["is_service"] & catalog["median_price"].notna() & catalog["category"].notna()]
    seeds = []
    for _, group in catalog.groupby(["category", "head"]):
        profiles = [name_profile(n, h) for n, h in zip(group["name"], group["head"], strict=True)]
        rows = list(zip(group["product_id"], group["median_price"], profiles, strict=True))
        seeds += [
            a
            for a, price_a, profile_a in rows
            if any(
                b != a
                and price_b > paid
                and DEFAULT_PRICE_BAND.contains(price_b / price_a)
                and upgrade_step(profile_a, p)
                for b, price_b, p in rows
            )
        ]
    return seeds


def test_g_an_up_sell_is_dearer_than_what_was_paid_and_says_by_how_much(settings: Settings) -> None:
    lines = read_purchase_history(SAMPLE).lines
    stepping = _with_a_step_up(lines, paid=2.95)[:30]  # the sample's items with a real step up
    events = [purchase("14769", AFTER_SAMPLE + timedelta(minutes=n), products=(p,)) for n, p in enumerate(stepping)]
    service = OfferService(settings.model_copy(update={"max_offers_per_message": 10}))
    with service.opened():
        decisions = service.decide_batch(events)
    up_sells = [o for d in decisions for o in d.offers if o.offer_type == "up_sell"]
    assert up_sells, "the sample's items with a real step up have up-sells"
    for offer in up_sells:  # every line was paid 2.95
        assert offer.price is not None and offer.price > 2.95
        assert offer.reason.endswith(f", +£{offer.price - 2.95:.2f}"), offer.reason
    held = [s for d in decisions for s in d.suppressed if s.rule == "upsell_not_dearer"]
    assert all(s.detail == "paid 2.95" for s in held)


def test_h_the_audit_of_served_offers_finds_no_broken_promise(settings: Settings, tmp_path: Path) -> None:
    lines = read_purchase_history(SAMPLE).lines
    bestsellers = lines["product_id"].value_counts().index[:30].tolist()
    stepping = _with_a_step_up(lines, paid=2.95)
    events = [
        purchase("14769", AFTER_SAMPLE + timedelta(hours=1, minutes=n), products=(p, bestsellers[-1 - n]))
        for n, p in enumerate(stepping[:15])
    ]
    FeaturePipeline(settings).apply(events)
    PurchaseArchive(settings.db_url).add_events(events)  # the archive keeps the baskets the audit shows
    service = OfferService(settings.model_copy(update={"max_offers_per_message": 10}))
    with service.opened():
        decisions = service.decide_batch(events)
        service.state.record(decisions, [d.to_bytes() for d in decisions])
    checks = run_audit(settings, tmp_path, sample=10_000)  # every offer in the sheets
    assert checks.decisions >= len([d for d in decisions if d.offers]) > 0
    assert checks.up_sells > 0 and checks.cross_sells > 0
    assert checks.up_sells_not_dearer == 0 and checks.claims_below_threshold == 0
    sheet = pd.read_csv(tmp_path / "up_sell.csv", dtype={"order_id": str})
    assert {"basket", "reason", "paid", "rating"} <= set(sheet.columns)
    ours = sheet[sheet["order_id"].isin({e.order_id for e in events})]  # earlier tests' orders have no lines here
    assert len(ours) > 0 and ours["basket"].str.len().min() > 0
    assert (ours["price"] > ours["paid"]).all()


def test_i_a_challenger_decides_for_its_share_and_caps_hold_across_variants(settings: Settings, tmp_path: Path) -> None:
    client = open_tracking(settings)
    champion = client.get_model_version_by_alias(settings.model_name, settings.champion_alias)
    challenger = client.create_model_version(settings.model_name, champion.source, run_id=champion.run_id)
    client.set_registered_model_alias(settings.model_name, settings.challenger_alias, str(challenger.version))
    settings = settings.model_copy(update={"challenger_share": 0.5})
    customers = read_purchase_history(SAMPLE).lines["customer_id"].dropna().unique()[:40].tolist()
    first = [purchase(c, AFTER_SAMPLE + timedelta(days=2, minutes=n)) for n, c in enumerate(customers)]
    later = [purchase(c, AFTER_SAMPLE + timedelta(days=2, hours=2, minutes=n)) for n, c in enumerate(customers)]
    service = OfferService(settings)
    try:
        with service.opened():
            batches = []
            for events in (first + later[:20], later[20:]):  # a customer's second purchase: same batch, or the next
                decided = service.decide_batch(events)
                service.state.record(decided, [d.to_bytes() for d in decided])
                batches.append(decided)
    finally:
        client.delete_registered_model_alias(settings.model_name, settings.challenger_alias)
    experiment = experiment_id_for("", int(champion.version), int(challenger.version))
    expected = {c: variant_for(c, experiment, 0.5) for c in customers}
    decided = [d for batch in batches for d in batch]
    assert {d.customer_id: d.variant for d in decided} == expected  # every decision records its customer's variant
    versions = {Variant.CHAMPION: str(champion.version), Variant.CHALLENGER: str(challenger.version)}
    assert all(d.model_version == versions[d.variant] for d in decided if d.variant)
    assert set(expected.values()) == set(Variant)  # 40 customers at a half share: both variants serve
    emails = Counter(d.customer_id for d in decided if Channel.EMAIL in d.channels)
    assert emails and max(emails.values()) == 1  # the cap of one e-mail a day holds in both variants
    # the audit checks each decision against the index of its own model version, the challenger's
    # too, whose alias is gone once the trial ends
    checks = run_audit(settings, tmp_path, sample=0)
    assert checks.decisions >= len([d for d in decided if d.offers]) > 0
    assert checks.claims_below_threshold == 0


def test_j_a_recommendation_on_request_agrees_with_the_offer_service(settings: Settings) -> None:
    event = purchase("14769", AFTER_SAMPLE + timedelta(days=3))
    service = OfferService(settings)
    with service.opened():
        (decided,) = service.decide_batch([event])
    request = OfferRequest(
        context=OfferContext.CART,
        items=tuple(RequestItem(line.product_id, line.quantity, line.unit_price) for line in event.lines),
        customer_id=event.customer_id,
        limit=settings.max_offers_per_message,
    )
    with Recommender(settings).opened() as recommender:
        answered = recommender.recommend(request, now=event.occurred_at).decision

    def ranked(decision: OfferDecision) -> list[tuple[str, str, float, str]]:
        return [(o.product_id, o.offer_type.value, o.score, o.reason) for o in decision.offers]

    assert decided.offers and ranked(answered) == ranked(decided)  # same candidates, features, model, rules
    assert answered.model_version == decided.model_version and answered.context is OfferContext.CART
    assert answered.channels == (Channel.IN_APP,)  # offers on request never e-mail
    assert not {o.offer_id for o in answered.offers} & {o.offer_id for o in decided.offers}  # ids of their own


def test_j_the_recommender_process_answers_as_a_recommender_here_and_replaces_a_dead_child(
    settings: Settings,
) -> None:
    event = purchase("14769", AFTER_SAMPLE + timedelta(days=3))
    request = OfferRequest(
        context=OfferContext.CHECKOUT,
        items=tuple(RequestItem(line.product_id, line.quantity, line.unit_price) for line in event.lines),
        customer_id=event.customer_id,
        request_id="req-process-test",  # the same ids either way
    )
    with Recommender(settings).opened() as recommender:
        here = recommender.recommend(request, now=event.occurred_at).decision
    MODEL_VERSION.set(0)
    with RecommenderProcess(settings).opened() as remote:
        assert remote.has_model()
        assert MODEL_VERSION.collect()[0].samples[0].value == int(here.model_version or 0) > 0  # its gauges, here
        (first,) = remote.recommend_batch([request], now=event.occurred_at)
        dead = remote.pid
        assert dead is not None
        os.kill(dead, signal.SIGKILL)
        with suppress(RecommenderUnavailable):  # the batch sent before the parent sees the child gone fails
            remote.recommend_batch([request], now=event.occurred_at)
        (second,) = remote.recommend_batch([request], now=event.occurred_at)  # served by a new child
        assert remote.pid not in (None, dead)

    def comparable(decision: OfferDecision) -> dict[str, object]:
        return decision.model_dump(exclude={"decided_at"})

    assert here.offers and comparable(first.decision) == comparable(here) == comparable(second.decision)


def test_k_the_checkout_api_never_offers_the_cart_or_what_is_owned_and_records_its_answers(
    settings: Settings, read_topic: Callable[..., list]
) -> None:
    lines = read_purchase_history(SAMPLE).lines
    customer = str(lines["customer_id"].value_counts().index[0])  # the sample's most frequent buyer
    cart = lines[lines["customer_id"] == customer]["product_id"].drop_duplicates().head(5).tolist()
    headers = {"X-API-Key": settings.api_key}
    body = {"customer_id": customer, "context": "checkout", "items": [{"product_id": p} for p in cart], "limit": 10}
    with TestClient(create_app(settings)) as client:
        answers = [client.post("/v1/recommendations", json=body, headers=headers) for _ in range(2)]
        anonymous = client.post(
            "/v1/recommendations", json={"context": "cart", "items": [{"product_id": BASKET[0]}]}, headers=headers
        )
    assert [a.status_code for a in answers] == [200, 200] and anonymous.status_code == 200
    service = OfferService(settings)
    with service.opened():
        owned = set(service.fold_state.owned_products([customer])[customer])
    offered = {o["product_id"] for a in answers for o in a.json()["offers"]}
    assert offered and not offered & (set(cart) | owned)
    types = [o["offer_type"] for o in answers[0].json()["offers"]]
    assert types == sorted(types, key=lambda t: t != "up_sell")  # at checkout, up-sells first
    assert anonymous.json()["customer_id"] is None and anonymous.json()["offers"]  # the model's cold start
    recorded = decisions(read_topic, settings, expected=3)
    assert {d.decision_id for d in recorded} == {a.json()["decision_id"] for a in (*answers, anonymous)}
    assert {d.context for d in recorded} == {OfferContext.CHECKOUT, OfferContext.CART}


def test_l_purchases_over_http_are_acknowledged_once_and_decided_once(
    settings: Settings, read_topic: Callable[..., list]
) -> None:
    event = purchase("17850", AFTER_SAMPLE + timedelta(days=4))
    body = event.model_dump(mode="json", exclude={"event_id"})
    headers = {"X-API-Key": settings.api_key}
    with TestClient(create_app(settings)) as client:
        retries = [client.post("/v1/purchases", json=body, headers=headers) for _ in range(3)]  # a client retrying
    assert [r.status_code for r in retries] == [202, 202, 202]
    assert {tuple(r.json()["event_ids"]) for r in retries} == {(event_id_for(event.order_id, EventType.PURCHASE),)}
    assert len(read_topic(settings.topic_purchases, expected=3)) == 3
    stats = OfferService(settings, until_caught_up=True).run()
    assert (stats.events, stats.decisions) == (3, 1)  # one decision: the repeats get the same one again
    assert {d.decision_id for d in decisions(read_topic, settings, expected=3)} == {decision_id_for(event.event_id)}


def test_m_purchases_over_http_with_the_broker_down_get_503_and_produce_nothing(
    settings: Settings, read_topic: Callable[..., list]
) -> None:
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "api_ack_timeout_s": 1.0})
    body = purchase("17850", AFTER_SAMPLE).model_dump(mode="json")
    with TestClient(create_app(down, publisher=RecordingPublisher())) as client:
        refused = client.post("/v1/purchases", json=body, headers={"X-API-Key": settings.api_key})
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    assert read_topic(settings.topic_purchases, expected=None, timeout_s=3.0) == []
