"""The ops dashboard over a real SQLite facts database: login, the session cookie, the JSON figures
(equal to `offer_quality` for every filter), pipeline counts, freshness and the Plotly bundle served
locally.

Facts are written with the feedback service's own functions (`services.feedback.facts`);
tests/integration/test_dashboard_browser.py renders the page in Chromium over a real pipeline run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from features.archive import PurchaseArchive
from infra.kafka.broker import free_port
from services.api.app import create_app
from services.api.session import COOKIE_NAME, sign_session
from services.delivery.outbox import Outbox, OutboxEntry
from services.feedback.experiment import experiment_report
from services.feedback.facts import open_facts, record_batch
from services.feedback.report import latency_over_time, offer_quality, offers_sent_per_day
from tests.services.api.factories import RecordingPublisher
from tests.services.feedback.factories import DECIDED, T0, decision, feedback, purchase
from xsell.offers import FeedbackType as F
from xsell.offers import OfferType, Suppression, Variant, offer_id_for
from xsell.settings import Settings, load_settings

CROSS, UP = OfferType.CROSS_SELL, OfferType.UP_SELL
KEY = "ops-test-key"
SECRET = "ops-test-secret"
EXTRA = ("offers_sent_per_day", "latency_over_time", "latest_model_version")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Own home and database; a broker address where nothing listens (the dashboard must cope)."""
    return load_settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        api_key=KEY,
        link_secret=SECRET,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
    )


@pytest.fixture
def facts(settings: Settings) -> Iterator[Engine]:
    """Two days of decisions by two model versions (version 1 the champion, version 2 the
    challenger of a live experiment): clicks, conversions, suppressions, a bounce, an unsubscribe."""
    engine = open_facts(settings.db_url)
    d1 = decision(
        "A1",
        "C1",
        T0,
        ("P1", CROSS),
        ("P2", UP),
        model_version="1",
        suppressed=(Suppression(rule="already_bought", product_id="P0"), Suppression(rule="email_cap")),
        variant=Variant.CHAMPION,
    )
    challenger = {"model_version": "2", "variant": Variant.CHALLENGER}
    d2 = decision("A2", "C2", T0, ("P1", CROSS), decided_at=DECIDED + timedelta(days=1), **challenger)
    d3 = decision("A3", "C3", T0, ("P3", UP), decided_at=DECIDED + timedelta(days=1, hours=2), **challenger)
    d4 = decision("A4", "C4", T0)  # no offer
    o11, o12, o21, o33 = (
        offer_id_for("A1", "P1"),
        offer_id_for("A1", "P2"),
        offer_id_for("A2", "P1"),
        offer_id_for("A3", "P3"),
    )
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
    bought = [
        (purchase("A1", "C1", T0, ("P0", 1, 2.0)), 1_000),
        (purchase("A2", "C2", T0, ("P0", 1, 2.0)), 1_000),
        (purchase("A3", "C3", T0, ("P0", 1, 2.0)), 1_000),
        (purchase("A4", "C4", T0, ("P0", 1, 2.0)), 1_000),
        (purchase("B1", "C1", T0 + timedelta(days=1), ("P1", 2, 5.0), ("P9", 1, 3.0)), 2_000),
        (purchase("B2", "C1", T0 + timedelta(days=2), ("P2", 1, 20.0)), 2_000),
        (purchase("B3", "C3", T0 + timedelta(days=1), ("P3", 1, 7.5)), 2_000),
    ]
    with engine.begin() as db:
        record_batch(db, [(d1, 1_030), (d2, 1_050), (d3, 1_900), (d4, 1_010)], events, bought)
    yield engine
    engine.dispose()


@pytest.fixture
def client(settings: Settings, facts: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, publisher=RecordingPublisher())) as test_client:
        yield test_client


def log_in(client: TestClient, key: str = KEY) -> int:
    """Post the login form; return the status (the client keeps the cookie)."""
    return client.post("/dashboard/login", data={"key": key}, follow_redirects=False).status_code


def test_dashboard_without_login_redirects_and_data_is_401(client: TestClient) -> None:
    page = client.get("/dashboard", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    for path in ("/dashboard/data", "/dashboard/pipeline", "/dashboard/freshness"):
        response = client.get(path)
        assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]
    form = client.get("/dashboard/login")
    assert form.status_code == 200 and 'action="/dashboard/login"' in form.text and 'type="password"' in form.text


def test_login_with_a_wrong_key_is_refused_and_sets_no_cookie(client: TestClient) -> None:
    for key in ("wrong", "", KEY + "x", "ops-test-ke"):
        response = client.post("/dashboard/login", data={"key": key}, follow_redirects=False)
        assert response.status_code == 401 and "set-cookie" not in response.headers
        assert "That key is not valid." in response.text
    assert (
        client.post(
            "/dashboard/login",
            content=b"key=" + b"x" * 5000,
            follow_redirects=False,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ).status_code
        == 401
    )
    assert client.get("/dashboard/data", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "9999999999.deadbeef",
        sign_session(SECRET, KEY, time.time() - 13 * 3600),  # expired
        sign_session(SECRET, "the-old-key", time.time()),  # the API key changed since
        sign_session("another-secret", KEY, time.time()),  # forged with another secret
    ],
)
def test_forged_expired_or_stale_session_cookies_are_refused(client: TestClient, value: str) -> None:
    client.cookies.set(COOKIE_NAME, value)
    assert client.get("/dashboard/data").status_code == 401
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_login_sets_a_signed_httponly_strict_cookie_and_logout_clears_it(client: TestClient) -> None:
    response = client.post("/dashboard/login", data={"key": KEY}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=") and KEY not in cookie
    assert {"HttpOnly", "SameSite=strict", "Path=/dashboard"} <= {part.strip() for part in cookie.split(";")}
    assert "Secure" not in cookie  # plain HTTP in tests; set over HTTPS

    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    for element in (
        "offers-sent",
        "click-rate",
        "chart-offers-per-day",
        "by-model-version",
        "dlq-records",
        "latency-p99",
        "chart-top-converting",
        "model-age",
        "archive-newest",
        "consumer-lag",
    ):
        assert re.search(rf'id="{element}"[^>]*data-value=""', page.text), element
    assert '<script src="/static/plotly.min.js"></script>' in page.text
    assert not re.search(r'<script[^>]+src="(https?:)?//', page.text)  # nothing from the internet
    nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
    assert f'<script nonce="{nonce}">' in page.text
    assert client.get("/dashboard/data").status_code == 200

    logout = client.post("/dashboard/logout", follow_redirects=False)
    assert logout.status_code == 303 and f'{COOKIE_NAME}=""' in logout.headers["set-cookie"]
    assert client.get("/dashboard/data").status_code == 401


def test_data_equals_offer_quality_with_cookie_or_api_key(client: TestClient, facts: Engine) -> None:
    assert log_in(client) == 303
    body = client.get("/dashboard/data").json()
    assert {k: v for k, v in body.items() if k not in EXTRA} == offer_quality(facts)
    assert (
        body["offers_sent_per_day"]
        == offers_sent_per_day(facts)
        == {
            "days": ["2011-03-01"],
            "offer_types": {"cross_sell": [2], "up_sell": [2]},
        }  # decided on 2 days, bought on 1
    )
    assert body["latency_over_time"] == latency_over_time(facts)
    assert (body["latency_over_time"]["bucket"], body["latency_over_time"]["count"]) == ("hour", [2, 1, 1])
    assert body["latest_model_version"] == "2"
    # the figures the fixture was built for, so the comparison above is not vacuous
    assert (body["offers_sent"], body["clicks"], body["conversions"], body["attributed_revenue"]) == (4, 2, 3, 37.5)
    assert set(body["by_model_version"]) == {"1", "2"} and body["suppressions_by_rule"] == {
        "already_bought": 1,
        "email_cap": 1,
    }
    assert (body["bounces"], body["unsubscribes"], body["latency_ms"]["p99"]) == (1, 1, 900.0)

    client.cookies.clear()
    with_key = client.get("/dashboard/data", headers={"X-API-Key": KEY})
    assert with_key.status_code == 200 and with_key.json() == body


@pytest.mark.parametrize(
    ("query", "since", "until", "offer_type"),
    [
        ("offer_type=up_sell", None, None, "up_sell"),
        ("since=2024-05-02", DECIDED + timedelta(days=1) - timedelta(hours=9), None, None),
        ("until=2024-05-02", None, DECIDED + timedelta(days=1) - timedelta(hours=9), None),
        (
            "since=2024-05-02T00:00:00Z&until=2024-05-03&offer_type=cross_sell",
            DECIDED + timedelta(hours=15),
            DECIDED + timedelta(days=1, hours=15),
            "cross_sell",
        ),
    ],
)
def test_filters_match_offer_quality_of_the_same_range(
    client: TestClient, facts: Engine, query: str, since: object, until: object, offer_type: str | None
) -> None:
    body = client.get(f"/dashboard/data?{query}", headers={"X-API-Key": KEY}).json()
    expected = offer_quality(facts, since=since, until=until, offer_type=offer_type)  # type: ignore[arg-type]
    assert {k: v for k, v in body.items() if k not in EXTRA} == expected
    assert body["offers_sent_per_day"] == offers_sent_per_day(
        facts,
        since=since,
        until=until,  # type: ignore[arg-type]
        offer_type=offer_type,
    )
    assert body["latency_over_time"] == latency_over_time(facts, since=since, until=until)  # type: ignore[arg-type]
    assert 0 < expected["offers_sent"] < 4  # each filter keeps some offers and drops others


def test_experiment_equals_the_report_per_variant_for_every_filter(client: TestClient, facts: Engine) -> None:
    assert client.get("/dashboard/experiment").status_code == 401
    body = client.get("/dashboard/experiment", headers={"X-API-Key": KEY}).json()
    assert body == experiment_report(facts)
    champion, challenger = body["variants"]["champion"], body["variants"]["challenger"]
    assert (champion["model_versions"], champion["offers_sent"], champion["converted_offers"]) == (["1"], 2, 2)
    assert (challenger["model_versions"], challenger["offers_sent"], challenger["converted_offers"]) == (["2"], 2, 1)
    # 1/2 against 2/2: pooled 0.75, z = -0.5 / sqrt(0.75 * 0.25 * (1/2 + 1/2)) = -1.1547, p = 0.2482
    assert body["verdict"] == "champion ahead, not yet significant (p=0.248)"

    filtered = client.get("/dashboard/experiment?since=2024-05-02&offer_type=up_sell", headers={"X-API-Key": KEY})
    expected = experiment_report(facts, since=DECIDED + timedelta(hours=15), offer_type="up_sell")
    assert filtered.json() == expected and expected["verdict"] == "no champion traffic"
    assert client.get("/dashboard/experiment?until=2024-13-01", headers={"X-API-Key": KEY}).status_code == 422


def test_the_page_has_the_latency_and_experiment_panels(client: TestClient) -> None:
    page = client.get("/dashboard", headers={"X-API-Key": KEY}).text
    for element in ("chart-latency", "experiment-verdict", "experiment-variants", "chart-experiment"):
        assert f'id="{element}"' in page
    assert "Offers sent per purchase day" in page and "/dashboard/experiment?" in page


def test_data_rejects_malformed_filters(client: TestClient) -> None:
    # a number (a timestamp to pydantic) and a naive time are neither a date nor an RFC 3339 date-time
    for query in ("offer_type=bundle", "since=yesterday", "until=2024-13-01", "until=0.5", "since=2024-05-02T10:00"):
        assert client.get(f"/dashboard/data?{query}", headers={"X-API-Key": KEY}).status_code == 422


def test_pipeline_counts_outbox_and_shows_the_dlq_as_unknown_with_kafka_down(
    client: TestClient, settings: Settings
) -> None:
    outbox = Outbox.for_settings(settings)
    now = time.time()
    outbox.add([OutboxEntry(f"D{i}", f"C{i}", (f"O{i}",), b"message") for i in range(4)], now)
    claimed = {row.decision_id: row for row in outbox.claim_due(now, "dashboard-test")}
    outbox.mark_sent(claimed["D0"], now)
    outbox.mark_failed(claimed["D1"], "550 mailbox unavailable", now)
    outbox.mark_failed(claimed["D2"], "550 mailbox unavailable", now)
    started = time.monotonic()
    body = client.get("/dashboard/pipeline", headers={"X-API-Key": KEY}).json()
    assert body == {
        "dlq_topic": settings.topic_purchases_dlq,
        "dlq_records": None,
        "delivery": {"pending": 1, "sent": 1, "failed": 2},
    }
    assert time.monotonic() - started < 15  # the broker being down costs a short timeout, not a hang


def test_freshness_with_kafka_down_no_registry_and_the_archive_behind(client: TestClient, settings: Settings) -> None:
    started = time.monotonic()
    body = client.get("/dashboard/freshness", headers={"X-API-Key": KEY}).json()
    assert time.monotonic() - started < 15  # the broker being down costs a short timeout, not a hang
    newest = T0 + timedelta(days=2)  # the fixture's newest purchase
    unknown = ("model_version", "model_registered_at", "model_age_s", "index_as_of", "index_age_s", "consumer_lag")
    assert {name: body[name] for name in unknown} == dict.fromkeys(unknown)
    assert body["newest_purchase_at"] == newest.isoformat()
    assert body["newest_archived_purchase_at"] is None and body["archive_behind_s"] is None  # no archive yet

    archive = PurchaseArchive(settings.db_url)
    archive.add_events(
        [purchase("X1", "C1", T0 + timedelta(hours=30), ("P1", 1, 2.0)), purchase("X0", "C2", T0, ("P2", 1, 3.0))]
    )
    archive.close()
    body = client.get("/dashboard/freshness", headers={"X-API-Key": KEY}).json()
    assert body["newest_archived_purchase_at"] == (T0 + timedelta(hours=30)).isoformat()
    assert body["archive_behind_s"] == 18 * 3600


def test_plotly_bundle_is_served_from_the_installed_package(client: TestClient) -> None:
    response = client.get("/static/plotly.min.js")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert len(response.content) > 1_000_000 and b"plotly" in response.content[:2000].lower()
    assert "max-age" in response.headers["cache-control"]


def test_every_page_links_an_icon_that_is_served(client: TestClient) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg") and "max-age" in icon.headers["cache-control"]
    login = client.get("/dashboard/login")
    assert '<link rel="icon" href="/favicon.ico"' in login.text
