"""The ops dashboard in a real headless Chromium, over a short real pipeline run.

Purchases (one malformed), decisions and feedback go through this test's Kafka topics; ingestion
dead-letters the malformed record and `FeedbackService` fills a real SQLite facts database. The API
runs for real (uvicorn, a free port, Kafka feedback publisher). The browser logs in through the
form, the page's script fetches and draws the figures, and every number element's `data-value`
(and each chart's plotted data) must equal `offer_quality` on the same database, before and after
the offer-type and date filters are applied. A screenshot is kept under the test's tmp folder and
written to docs/dashboard.png when XSELL_UPDATE_SCREENSHOT=1.

Without Chromium the test is skipped, unless CI is set: then it fails (see tests/integration/chromium.py).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from kafka import KafkaProducer

from cli.demo import count_records
from infra.kafka.broker import free_port
from services.api.app import create_app
from services.delivery.outbox import Outbox, OutboxEntry
from services.feedback.facts import open_facts
from services.feedback.report import latest_model_version, offer_quality, offers_sent_per_day
from services.feedback.service import FeedbackService
from services.ingest.validator import IngestService
from tests.integration.api_server import serving
from tests.integration.chromium import Chromium, chromium_or_skip
from tests.services.feedback.factories import DECIDED, T0, decision, feedback, purchase
from xsell.offers import FeedbackType as F
from xsell.offers import OfferType, Suppression, offer_id_for
from xsell.settings import Settings

CROSS, UP = OfferType.CROSS_SELL, OfferType.UP_SELL
REPO_ROOT = Path(__file__).resolve().parents[2]
# element id -> where its number is in the data (report keys, "latency_ms.p50", ...)
NUMBERS = {
    "decisions": "decisions",
    "offers-sent": "offers_sent",
    "impressions": "impressions",
    "clicks": "clicks",
    "converted-offers": "converted_offers",
    "conversions": "conversions",
    "impression-rate": "impression_rate",
    "click-rate": "click_rate",
    "conversion-rate": "conversion_rate",
    "attributed-revenue": "attributed_revenue",
    "revenue-per-offer": "revenue_per_offer",
    "aov-converting-orders": "aov_converting_orders",
    "converting-orders": "converting_orders",
    "emails-sent": "emails_sent",
    "bounces": "bounces",
    "bounce-rate": "bounce_rate",
    "unsubscribes": "unsubscribes",
    "unsubscribe-rate": "unsubscribe_rate",
    "latency-p50": "latency_ms.p50",
    "latency-p99": "latency_ms.p99",
    "latency-count": "latency_ms.count",
    "latest-model-version": "latest_model_version",
    "dlq-records": "dlq_records",
    "delivery-failed": "delivery.failed",
    "delivery-pending": "delivery.pending",
    "delivery-sent": "delivery.sent",
}
READ_PAGE = """JSON.stringify({
  values: Object.fromEntries([...document.querySelectorAll("[id][data-value]")].map(e => [e.id, e.dataset.value])),
  texts: Object.fromEntries([...document.querySelectorAll(".number .value")].map(e => [e.id, e.textContent])),
  cells: [...document.querySelectorAll("table[id] tbody td[data-metric]")].map(td =>
    [td.closest("table").id, td.closest("tr").dataset.key, td.dataset.metric, td.dataset.value]),
  plotted: Object.fromEntries([...document.querySelectorAll(".chart")].map(e =>
    [e.id, (e.data || []).map(t => ({x: t.x, y: t.y}))])),
  svgs: document.querySelectorAll(".chart .main-svg").length,
})"""


class Service(Protocol):
    def run(self) -> object: ...
    def stop(self) -> None: ...


@pytest.fixture
def settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    """This test's topics, its own home (facts database, outbox) and a free API port."""
    return kafka_settings.model_copy(
        update={
            "home": tmp_path / "home",
            "api_key": "browser-test-key",
            "link_secret": "browser-test-secret",
            "api_port": free_port(),
        }
    )


def produce(settings: Settings) -> None:
    """Two days of decisions by two model versions, their purchases (and one malformed record), feedback."""
    d1 = decision(
        "A1",
        "C1",
        T0,
        ("P1", CROSS),
        ("P2", UP),
        model_version="1",
        suppressed=(Suppression(rule="already_bought", product_id="P0"), Suppression(rule="email_cap")),
    )
    d2 = decision("A2", "C2", T0, ("P1", CROSS), model_version="2", decided_at=DECIDED + timedelta(days=1))
    d3 = decision("A3", "C3", T0, ("P3", UP), model_version="2", decided_at=DECIDED + timedelta(days=1, hours=2))
    d4 = decision("A4", "C4", T0)  # no offer
    o11, o12, o21, o33 = (
        offer_id_for("A1", "P1"),
        offer_id_for("A1", "P2"),
        offer_id_for("A2", "P1"),
        offer_id_for("A3", "P3"),
    )
    purchases = [
        purchase("A1", "C1", T0, ("P0", 1, 2.0)),
        purchase("A2", "C2", T0, ("P0", 1, 2.0)),
        purchase("A3", "C3", T0, ("P0", 1, 2.0)),
        purchase("A4", "C4", T0, ("P0", 1, 2.0)),
        purchase("B1", "C1", T0 + timedelta(days=1), ("P1", 2, 5.0), ("P9", 1, 3.0)),  # converts o11: 10.0
        purchase("B2", "C1", T0 + timedelta(days=2), ("P2", 1, 20.0)),  # converts o12: 20.0
        purchase("B3", "C3", T0 + timedelta(days=1), ("P3", 1, 7.5)),  # converts o33: 7.5
    ]
    events = [
        feedback(F.IMPRESSION, o11),
        feedback(F.CLICK, o11),
        feedback(F.EMAIL_SENT, o11),
        feedback(F.EMAIL_SENT, o12),
        feedback(F.EMAIL_SENT, o21, "C2"),
        feedback(F.EMAIL_CLICKED, o21, "C2"),
        feedback(F.BOUNCED, o33, "C3"),
        feedback(F.UNSUBSCRIBED, o21, "C2", at=DECIDED + timedelta(days=1, hours=1)),
    ]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        for event in purchases:
            producer.send(settings.topic_purchases, key=event.key(), value=event.to_bytes())
        producer.send(settings.topic_purchases, key=b"C9", value=b"{broken")  # ingestion dead-letters it
        producer.flush()
        for item in (d1, d2, d3, d4):
            producer.send(settings.topic_offers, key=item.key(), value=item.to_bytes())
        for fact in events:
            producer.send(settings.topic_offer_feedback, key=(fact.offer_id or "").encode(), value=fact.to_bytes())
        producer.flush()
    finally:
        producer.close()


def run_until_caught_up(service: Service, name: str) -> None:
    """Run a consumer service in a thread (signal handlers stay pytest's) until it has read everything."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            errors.append(error)

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        service.stop()
        thread.join(10)
        pytest.fail(f"{name} did not catch up")
    if errors:
        raise errors[0]


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    """The API served by uvicorn in a thread; yields its base URL."""
    with serving(create_app(settings), settings.api_port) as url:
        yield url


def pick(data: dict[str, Any], path: str) -> Any:
    """data["a"]["b"] for path "a.b"."""
    for part in path.split("."):
        data = data[part]
    return data


def assert_page_shows(page: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every number, table cell and chart on the page equals the expected data."""
    shown = {element: json.loads(page["values"][element]) for element in NUMBERS}
    assert shown == {element: pick(expected, path) for element, path in NUMBERS.items()}
    assert page["texts"]["offers-sent"] == str(expected["offers_sent"])
    assert page["texts"]["click-rate"] == (
        "n/a" if expected["click_rate"] is None else f"{100 * expected['click_rate']:.2f} %"
    )
    groups = {
        "by-offer-type": expected["by_offer_type"],
        "by-model-version": expected["by_model_version"],
        "by-context": expected["by_context"],
    }
    cells = {(table, key, metric): json.loads(value) for table, key, metric, value in page["cells"]}
    assert cells and all(groups[table][key][metric] == value for (table, key, metric), value in cells.items())
    assert {(t, k) for t, k, _ in cells} == {(t, k) for t, figures in groups.items() for k in figures}
    daily = expected["offers_sent_per_day"]
    assert json.loads(page["values"]["chart-offers-per-day"]) == daily
    assert [trace["y"] for trace in page["plotted"]["chart-offers-per-day"]] == list(daily["offer_types"].values())
    assert json.loads(page["values"]["chart-suppressions"]) == expected["suppressions_by_rule"]
    assert page["plotted"]["chart-suppressions"][0]["x"] == list(expected["suppressions_by_rule"].values())
    assert json.loads(page["values"]["chart-top-offered"]) == {
        p["product_id"]: p["offers"] for p in expected["top_offered_products"]
    }
    assert json.loads(page["values"]["chart-top-converting"]) == {
        p["product_id"]: p["conversions"] for p in expected["top_converting_products"]
    }
    assert page["svgs"] >= 8  # Plotly drew the charts


def test_dashboard_in_chromium_shows_the_databases_figures(settings: Settings, api: str, tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    produce(settings)
    run_until_caught_up(IngestService(settings, until_caught_up=True), "ingest-under-test")
    group = f"feedback-{uuid.uuid4().hex[:8]}"
    run_until_caught_up(FeedbackService(settings, group_id=group, until_caught_up=True), "feedback-under-test")
    outbox = Outbox.for_settings(settings)
    now = time.time()
    outbox.add([OutboxEntry(f"D{i}", f"C{i}", (f"O{i}",), b"message") for i in range(3)], now)
    claimed = {row.decision_id: row for row in outbox.claim_due(now, "dashboard-test")}
    outbox.mark_sent(claimed["D0"], now)
    outbox.mark_failed(claimed["D1"], "550 mailbox unavailable", now)
    engine = open_facts(settings.db_url)
    pipeline = {"dlq_records": count_records(settings, settings.topic_purchases_dlq), "delivery": outbox.counts()}
    assert pipeline["dlq_records"] == 1

    def expected(**filters: Any) -> dict[str, Any]:
        return {
            **offer_quality(engine, **filters),
            "offers_sent_per_day": offers_sent_per_day(engine, **filters),
            "latest_model_version": latest_model_version(engine, **filters),
            **pipeline,
        }

    everything = expected()
    assert (everything["offers_sent"], everything["conversions"], everything["attributed_revenue"]) == (4, 3, 37.5)
    with Chromium(chromium, tmp_path / "chromium-profile") as browser:
        browser.goto(f"{api}/dashboard")
        browser.wait_for("location.pathname === '/dashboard/login' && !!document.getElementById('key')")
        browser.evaluate("document.getElementById('key').value = 'wrong'; document.getElementById('login').submit()")
        browser.wait_for("!!document.getElementById('login-error')")
        browser.errors.clear()  # Chromium logs the refused login's 401 as a failed load
        browser.evaluate(
            f"document.getElementById('key').value = {json.dumps(settings.api_key)};"
            " document.getElementById('login').submit()"
        )
        browser.wait_for("location.pathname === '/dashboard' && document.body.dataset.state === 'ready'")
        assert_page_shows(json.loads(browser.evaluate(READ_PAGE)), everything)
        lag = json.loads(browser.evaluate("document.getElementById('consumer-lag').dataset.value"))
        assert lag[settings.ingest_group] == 0  # the freshness panel: ingestion committed all it read
        shot = browser.screenshot(tmp_path / "dashboard.png")

        browser.evaluate(
            "document.getElementById('offer-type').value = 'up_sell';"
            " document.getElementById('since').value = '2024-05-02';"
            " document.getElementById('apply').click()"
        )
        browser.wait_for("document.body.dataset.state === 'ready' && location.search.includes('offer_type=up_sell')")
        assert browser.evaluate("location.search") == "?since=2024-05-02&offer_type=up_sell"
        filtered = expected(since=DECIDED + timedelta(hours=15), offer_type="up_sell")
        assert filtered["offers_sent"] == 1 and filtered["by_model_version"].keys() == {"2"}
        assert_page_shows(json.loads(browser.evaluate(READ_PAGE)), filtered)
        assert browser.errors == []  # no script error, no CSP refusal, no failed load
    engine.dispose()

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"dashboard screenshot: {shot}")
    if os.environ.get("XSELL_UPDATE_SCREENSHOT") == "1":
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO_ROOT / "docs" / "dashboard.png")
