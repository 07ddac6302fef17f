"""The main job (`make run`): the whole offer pipeline on embedded defaults and the shipped sample.

1. start the local stack (Kafka broker, SMTP capture server);
2. split the purchase history: everything before the last `live_days` is history, the rest is
   replayed later as live purchases; the history goes into the purchase archive (`xsell import`);
3. backfill the feature store from the history and train, evaluate and register the ranker
   (first version = champion); skipped when the same history was already prepared;
4. start the services: ingest (validation, DLQ), feature pipeline, purchase archive, offer service
   (with a challenger share), e-mail delivery, in-app inbox, API, MLflow UI;
5. replay the live weeks but the last `trial_days` into `purchases` as fast as the broker takes
   them (with demo contacts, see `with_demo_contacts`);
6. retrain from the archive, which now holds those live days (`xsell retrain --live-trial`): the
   new version becomes the challenger;
7. replay the last `trial_days` paced at `trial_rate` events/s, as a shop sends them: served by
   champion and challenger, each for its share of customers, and timed at a steady pace;
8. wait until every live purchase has its decision and every e-mail left the outbox; the feedback
   service attributes conversions (a later purchase of an offered product) and the shoppers'
   clicks on converted offers are simulated through the API;
9. ask the checkout API for offers on the cart of a replayed order (`POST /v1/recommendations`)
   and send that order again as a new one over HTTP, twice (`POST /v1/purchases`: one event id);
10. return a summary: events ingested and dead-lettered, offers by type, suppressions by rule,
   e-mails, the retrain and the live experiment per variant, an example offer, the checkout.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from features.archive import PurchaseArchive
from infra.processes import ServiceProcesses, pipeline_services
from infra.stack import stack_up
from services.delivery.outbox import Outbox
from services.ingest.replay import Pacing, produce_events, select_events, with_demo_contacts
from services.schema import create_schema
from xsell.consumer import wait_for
from xsell.events import PurchaseEvent
from xsell.history import PurchaseHistory, history_rows, read_purchase_history
from xsell.kafka_security import client_security
from xsell.offers import Channel, OfferDecision
from xsell.settings import Settings


class DemoError(RuntimeError):
    """The main job could not run; the message says what to do."""


@dataclass
class DemoReport:
    """What `make run` prints."""

    live_events: int = 0
    ingested: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    decisions: int = 0
    offers_by_type: dict[str, int] = field(default_factory=dict)
    suppressed_by_rule: dict[str, int] = field(default_factory=dict)
    no_offer_by_reason: dict[str, int] = field(default_factory=dict)
    emails_sent: int = 0
    emails_pending: int = 0
    conversions: int = 0
    simulated_clicks: int = 0
    attributed_revenue: float = 0.0
    example: dict[str, object] | None = None
    training: dict[str, object] | None = None
    archived: dict[str, object] = field(default_factory=dict)
    retrain: dict[str, object] = field(default_factory=dict)
    experiment: dict[str, Any] = field(default_factory=dict)
    checkout: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def split_history(path: Path, live_days: int, out_dir: Path) -> tuple[Path, PurchaseHistory, int]:
    """Write the history part (all but the last `live_days`) to `out_dir`; return its path, the
    full history, and the number of lines held back as live."""
    history = read_purchase_history(path)
    lines = history.lines
    out_dir.mkdir(parents=True, exist_ok=True)
    past = lines[lines["ordered_at"] < live_cutoff(history, live_days)]
    target = out_dir / "history.parquet"
    history_rows(past).to_parquet(target, index=False)
    return target, history, int(len(lines) - len(past))


def live_cutoff(history: PurchaseHistory, live_days: int) -> pd.Timestamp:
    """Start of the live weeks: `live_days` before the last order."""
    return history.lines["ordered_at"].max() - pd.Timedelta(days=live_days)


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


def _wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  (loopback URL from settings)
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def prepare_model(settings: Settings, history_path: Path) -> dict[str, object] | None:
    """Backfill and train on the history unless this exact history was prepared before."""
    marker = settings.home / "demo" / "prepared.json"
    # the same history trained into the same tracking store (a profile switch means a new store)
    fingerprint = {
        "sha256": _fingerprint(history_path),
        "tracking_uri": settings.tracking_uri,
        "online_store": settings.feast_online_store,
    }
    if marker.exists() and {k: v for k, v in json.loads(marker.read_text()).items() if k in fingerprint} == fingerprint:
        return None
    from training.commands import train  # noqa: PLC0415  (heavy imports only when training)

    summary = train(settings, history_path)
    marker.write_text(json.dumps({**fingerprint, "model_version": summary.get("model_version")}))
    return summary


def start_services(settings: Settings, env: dict[str, str] | None = None) -> None:
    """Start every pipeline service in the background (with ``env`` on top of the profile's) and
    wait for the API to answer and every consumer group to be stable."""
    processes = ServiceProcesses(settings)
    for spec in pipeline_services(settings):
        port = {"api": settings.api_port, "mlflow-ui": settings.mlflow_ui_port}.get(spec.name)
        if port and processes.pid(spec.name) is None and not _port_free(settings.api_host, port):
            raise DemoError(
                f"port {port} is taken: free it or set XSELL_{'API' if spec.name == 'api' else 'MLFLOW_UI'}_PORT"
            )
        processes.start(spec, env)
    if not _wait_http(f"http://{settings.api_host}:{settings.api_port}/healthz", 90):
        raise DemoError(f"the API did not come up; see {settings.home / 'logs' / 'api.log'}")
    groups = list(settings.consumer_groups.values())
    if not _wait_groups(settings, groups, 120):
        raise DemoError(f"the consumers did not join their groups; see the logs in {settings.home / 'logs'}")


def _wait_groups(settings: Settings, groups: list[str], timeout_s: float) -> bool:
    """Wait until every consumer group is stable with a member, so the live replay measures the
    pipeline rather than its start-up (imports, group joins, the champion's load)."""

    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id="xsell-demo", **client_security(settings)
    )

    def stable() -> bool:
        described = admin.describe_groups(groups)
        return all(described[g]["group_state"] == "Stable" and described[g]["members"] for g in groups)

    try:
        return wait_for(stable, timeout_s, interval_s=0.5)
    finally:
        admin.close()


def collect_decisions(settings: Settings, event_ids: set[str], timeout_s: float) -> dict[str, OfferDecision]:
    """Read `offers` until every event in `event_ids` has its decision (or the timeout)."""
    consumer = KafkaConsumer(
        settings.topic_offers,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        **client_security(settings),
    )
    found: dict[str, OfferDecision] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not event_ids <= found.keys():
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    decision = OfferDecision.model_validate_json(record.value)
                    if decision.event_id in event_ids:
                        found[decision.event_id] = decision
    finally:
        consumer.close()
    return found


def count_records(settings: Settings, topic: str) -> int:
    """Records in a topic (end minus beginning offsets over its partitions)."""

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, **client_security(settings))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        consumer.close()


def wait_for_outbox(settings: Settings, expected: int, timeout_s: float) -> dict[str, int]:
    """Wait until `expected` e-mails are in the delivery outbox and none is pending; return its counts."""
    outbox = Outbox.for_settings(settings)
    deadline = time.monotonic() + timeout_s
    counts = outbox.counts()
    while (sum(counts.values()) < expected or counts.get("pending", 0)) and time.monotonic() < deadline:
        time.sleep(0.5)
        counts = outbox.counts()
    return counts


def wait_for_facts(settings: Settings, decisions: int, timeout_s: float) -> dict[str, Any]:
    """Wait until the feedback service stored at least `decisions` decisions; return the report."""
    from services.feedback.facts import open_facts  # noqa: PLC0415  (the feedback store: only for the report)
    from services.feedback.report import offer_quality  # noqa: PLC0415  (the feedback store: only for the report)

    engine = open_facts(settings.db_url)
    try:
        deadline = time.monotonic() + timeout_s
        figures = offer_quality(engine)
        while figures.get("decisions", 0) < decisions and time.monotonic() < deadline:
            time.sleep(1)
            figures = offer_quality(engine)
        return figures
    finally:
        engine.dispose()


def simulate_clicks(settings: Settings) -> int:
    """Shoppers' clicks, simulated from the replayed data: every offer that a later purchase
    converted is reported as seen and clicked, through the real API (`POST /v1/offers/{id}/events`)."""
    from sqlalchemy import select  # noqa: PLC0415  (the feedback store: only for the report)

    from services.feedback.facts import conversions, open_facts  # noqa: PLC0415  (the feedback store: only for the report)

    engine = open_facts(settings.db_url)
    try:
        with engine.connect() as db:
            converted = sorted(
                {
                    (r.offer_id, r.customer_id)
                    for r in db.execute(select(conversions.c.offer_id, conversions.c.customer_id))
                }
            )
    finally:
        engine.dispose()
    clicks = 0
    for offer_id, customer_id in converted:
        for kind in ("impression", "click"):
            status, _ = api_post(
                settings,
                f"/v1/offers/{offer_id}/events",
                {"customer_id": customer_id, "type": kind},
                {"Idempotency-Key": f"demo-{kind}-{offer_id}"},
            )
            # an e-mail-only offer is not in the in-app store: nothing to click in-app (404)
            clicks += int(kind == "click" and status == 202)
    return clicks


def api_post(
    settings: Settings, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON to the running API with the API key: (status, JSON answer)."""
    request = urllib.request.Request(
        f"http://{settings.api_host}:{settings.api_port}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"X-API-Key": settings.api_key, "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310  (loopback)
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def checkout_example(settings: Settings, events: list[PurchaseEvent]) -> dict[str, Any]:
    """The checkout API on the cart of the last replayed order of a known customer with several
    items: the offers at checkout (`POST /v1/recommendations`), then the order sent again as a new
    one over HTTP (`POST /v1/purchases`), twice, as a client retrying would (one event id)."""
    order = next((e for e in reversed(events) if e.customer_id and len({ln.product_id for ln in e.lines}) >= 2), None)
    if order is None:
        return {}
    items = list({ln.product_id: ln for ln in order.lines}.values())[:5]
    cart = {
        "customer_id": order.customer_id,
        "context": "checkout",
        "items": [{"product_id": ln.product_id, "quantity": ln.quantity, "unit_price": ln.unit_price} for ln in items],
    }
    status, answer = api_post(settings, "/v1/recommendations", cart)
    purchase = order.model_dump(mode="json", exclude={"event_id"}) | {
        "order_id": f"http-{order.order_id}",
        # in the replay's time: a purchase dated today would move the archive's newest day, the
        # end of the next retrain's window
        "occurred_at": (order.occurred_at + timedelta(minutes=1)).isoformat(),
    }
    sent = [api_post(settings, "/v1/purchases", purchase) for _ in range(2)]
    return {
        "customer_id": order.customer_id,
        "status": status,
        "cart": [item.get("name") or item.get("product_id") for item in answer.get("items", [])],
        "offers": answer.get("offers", []),
        "purchase_status": [code for code, _ in sent],
        "event_ids": sorted({event_id for _, body in sent for event_id in body.get("event_ids", [])}),
    }


def archive_history(settings: Settings, history_path: Path) -> dict[str, object]:
    """Load the history part into the purchase archive, as `xsell import` does (lines already
    there are not added again)."""
    archive = PurchaseArchive(settings.db_url)
    try:
        added = archive.add_lines(read_purchase_history(history_path).lines)
        _, newest, lines = archive.span()
    finally:
        archive.close()
    return {"added": added, "lines": lines, "newest": newest}


def end_previous_trial(settings: Settings) -> None:
    """Remove a challenger alias left by an earlier run: this run's retrain names its own."""
    from models.registry import alias_version, open_tracking  # noqa: PLC0415  (MLflow: slow to import)

    client = open_tracking(settings)
    if alias_version(client, settings, settings.challenger_alias) is not None:
        client.delete_registered_model_alias(settings.model_name, settings.challenger_alias)


def wait_for_archive(settings: Settings, newest: datetime, timeout_s: float) -> bool:
    """Wait until the archive holds a purchase at ``newest`` or later (the archive service caught up)."""
    archive = PurchaseArchive(settings.db_url)
    try:
        return wait_for(lambda: (archive.span()[1] or datetime.min.replace(tzinfo=UTC)) >= newest, timeout_s, 0.5)
    finally:
        archive.close()


def wait_for_challenger(settings: Settings, timeout_s: float) -> bool:
    """Wait until every offer service reports the challenger loaded on its /metrics (registered-at
    gauge with the challenger label), so that the trial replay is served by both models."""
    ports = [spec.metrics_port for spec in pipeline_services(settings) if spec.name.startswith("offers")]
    needle = 'xsell_model_registered_at_seconds{variant="challenger"}'

    def loaded() -> bool:
        for port in ports:
            try:
                with urllib.request.urlopen(f"http://{settings.api_host}:{port}/metrics", timeout=2) as answer:
                    if needle not in answer.read().decode():
                        return False
            except OSError:
                return False
        return True

    return wait_for(loaded, timeout_s, interval_s=1.0)


def run_demo(
    settings: Settings,
    data: Path,
    live_days: int = 21,
    say: object = print,
    trial_days: int = 7,
    trial_rate: float = 10.0,
    challenger_share: float = 0.5,
) -> DemoReport:
    """Run the whole pipeline once; see the module docstring."""
    report = DemoReport()
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        report.seconds[step] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()
        say(f"  {step}: {report.seconds[step]}s")  # type: ignore[operator]

    stack_up(settings, create_schema)
    lap("stack up")
    history_path, history, _ = split_history(data, live_days, settings.home / "demo")
    report.archived = archive_history(settings, history_path)
    report.training = prepare_model(settings, history_path)
    end_previous_trial(settings)
    lap(
        "archive history, features backfill + train + register"
        if report.training
        else "model ready (same history as before)"
    )
    start_services(settings, {"XSELL_CHALLENGER_SHARE": str(settings.challenger_share or challenger_share)})
    lap("services up")

    since = live_cutoff(history, live_days).to_pydatetime()
    live = [with_demo_contacts(e) for e in select_events(history, since=since)]
    trial_from = live_cutoff(history, min(trial_days, live_days)).to_pydatetime()
    before_trial = [e for e in live if e.occurred_at < trial_from]
    trial = [e for e in live if e.occurred_at >= trial_from]
    produce_events(settings, iter(before_trial))
    decisions = collect_decisions(settings, {e.event_id for e in before_trial}, timeout_s=180)
    lap(f"replay {len(before_trial)} live purchases and decide")
    if before_trial and not wait_for_archive(settings, max(e.occurred_at for e in before_trial), 120):
        raise DemoError(f"the archive did not catch up; see {settings.home / 'logs' / 'archive.log'}")
    from training.retrain import retrain  # noqa: PLC0415  (heavy imports only when training)

    share = settings.challenger_share or challenger_share  # what the offer services were started with
    retrained = retrain(settings.model_copy(update={"challenger_share": share}), live_trial=True)
    report.retrain = {k: retrained.get(k) for k in ("model_version", "outcome", "message", "archive")}
    lap("retrain from the archive")
    if not wait_for_challenger(settings, 120):
        raise DemoError(f"the offer service did not load the challenger; see {settings.home / 'logs' / 'offers.log'}")
    lap("challenger loaded")
    produce_events(settings, iter(trial), Pacing(rate=trial_rate))
    trial_decisions = collect_decisions(settings, {e.event_id for e in trial}, timeout_s=180)
    decisions |= trial_decisions
    # decided now, or by an earlier run of the same replay (its stored decisions come back)
    trial_started = min((d.decided_at for d in trial_decisions.values()), default=datetime.now(UTC))
    lap(f"replay {len(trial)} live purchases at {trial_rate:g}/s, champion and challenger")
    report.live_events = len(live)
    report.ingested = {
        "orders": sum(1 for e in live if e.event_type == "purchase"),
        "cancellations": sum(1 for e in live if e.event_type == "order_cancelled"),
        "anonymous_orders": sum(1 for e in live if e.customer_id is None),
        "customers": len({e.customer_id for e in live if e.customer_id}),
        "lines": sum(len(e.lines) for e in live),
    }
    emails = sum(1 for d in decisions.values() if Channel.EMAIL in d.channels)
    counts = wait_for_outbox(settings, emails, timeout_s=180)
    lap("deliver e-mails")
    wait_for_facts(settings, len(decisions), timeout_s=120)
    report.simulated_clicks = simulate_clicks(settings)
    time.sleep(3)  # the feedback service stores the clicks
    quality = wait_for_facts(settings, len(decisions), timeout_s=30)
    report.conversions = int(quality.get("conversions", 0))
    report.attributed_revenue = float(quality.get("attributed_revenue", 0.0))
    report.experiment = experiment_figures(settings, trial_started)
    lap("attribute conversions, simulate clicks")
    report.checkout = checkout_example(settings, trial or live)
    lap("checkout API: offers for a cart, a purchase over HTTP")

    by_type: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for decision in decisions.values():
        by_type.update(str(o.offer_type) for o in decision.offers)
        rules.update(s.rule for s in decision.suppressed)
        if decision.no_offer_reason:
            reasons[decision.no_offer_reason] += 1
    report.decisions = len(decisions)
    report.dead_lettered = count_records(settings, settings.topic_purchases_dlq)
    report.offers_by_type, report.suppressed_by_rule = dict(by_type), dict(rules)
    report.no_offer_by_reason = dict(reasons)
    report.emails_sent, report.emails_pending = counts.get("sent", 0), counts.get("pending", 0)
    example = next((d for d in decisions.values() if len(d.offers) >= 2), None)
    if example is not None:
        report.example = {
            "customer_id": example.customer_id,
            "order_id": example.order_id,
            "model_version": example.model_version,
            "offers": [
                {"product": o.name or o.product_id, "type": str(o.offer_type), "score": o.score, "reason": o.reason}
                for o in example.offers
            ],
        }
    return report


def experiment_figures(settings: Settings, since: datetime) -> dict[str, Any]:
    """Champion against challenger on the offers decided since the trial began (`xsell experiment status`)."""
    from services.feedback.experiment import experiment_report  # noqa: PLC0415  (the feedback store: only for the report)
    from services.feedback.facts import open_facts  # noqa: PLC0415  (the feedback store: only for the report)

    engine = open_facts(settings.db_url)
    try:
        return experiment_report(engine, since=since)
    finally:
        engine.dispose()
