"""The offer-quality report on facts written to a real (temporary) SQLite database."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from services.feedback.facts import open_facts, record_batch, record_decisions
from services.feedback.report import (
    latency_over_time,
    latest_model_version,
    offer_quality,
    offers_sent_per_day,
    percentile,
)
from tests.services.feedback.factories import DECIDED, T0, decision, feedback, purchase
from xsell.offers import FeedbackType as F
from xsell.offers import OfferContext, OfferType, Suppression, offer_id_for

CROSS, UP = OfferType.CROSS_SELL, OfferType.UP_SELL


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """A facts database with a small, fully known history."""
    engine = open_facts(f"sqlite:///{tmp_path / 'facts.db'}")
    d1 = decision(
        "A1",
        "C1",
        T0,
        ("P1", CROSS),
        ("P2", UP),
        suppressed=(Suppression(rule="already_bought", product_id="P0"), Suppression(rule="email_cap")),
        names={"P1": "RED MUG", "P2": "RED MUG LARGE"},
    )
    d2 = decision("A2", "C2", T0, ("P1", CROSS), model_version="2")  # P1 without a name here: A1's names it
    d3 = decision("A3", "C3", T0)
    d4 = decision("A4", "C4", T0, ("P3", CROSS), model_version=None, decided_at=DECIDED + timedelta(days=1))
    o11, o12, o21, o43 = (
        offer_id_for("A1", "P1"),
        offer_id_for("A1", "P2"),
        offer_id_for("A2", "P1"),
        offer_id_for("A4", "P3"),
    )
    events = [
        feedback(F.IMPRESSION, o11),
        feedback(F.CLICK, o11),
        feedback(F.CLICK, o11, salt="again"),
        feedback(F.EMAIL_SENT, o11),
        feedback(F.EMAIL_SENT, o12),
        feedback(F.EMAIL_SENT, o21, "C2"),
        feedback(F.EMAIL_OPENED, None, "C2", decision_id=d2.decision_id),
        feedback(F.EMAIL_CLICKED, o21, "C2"),
        feedback(F.BOUNCED, o43, "C4"),
        feedback(F.UNSUBSCRIBED, o21, "C2"),
    ]
    bought = [
        (purchase("A1", "C1", T0, ("P0", 1, 2.0)), 1_000),
        (purchase("A2", "C2", T0, ("P0", 1, 2.0)), 1_000),
        (purchase("A3", "C3", T0, ("P0", 1, 2.0)), 1_000),
        (purchase("B1", "C1", T0 + timedelta(days=1), ("P1", 2, 5.0), ("P9", 1, 3.0)), 2_000),
        (purchase("B2", "C2", T0 + timedelta(days=8), ("P1", 1, 5.0)), 2_000),
        (purchase("B3", "C1", T0 + timedelta(days=2), ("P2", 1, 20.0)), 2_000),
    ]
    with engine.begin() as db:
        record_batch(db, [(d1, 1_040), (d2, 1_100), (d3, 1_010), (d4, None)], events, bought)
    return engine


def test_overall_figures(engine: Engine) -> None:
    report = offer_quality(engine)
    assert report["decisions"] == 4
    assert {k: report[k] for k in ("offers_sent", "impressions", "clicks", "converted_offers", "conversions")} == {
        "offers_sent": 4,
        "impressions": 2,
        "clicks": 2,
        "converted_offers": 2,
        "conversions": 2,
    }
    assert report["attributed_revenue"] == 30.0
    assert (report["impression_rate"], report["click_rate"], report["conversion_rate"]) == (0.5, 0.5, 0.5)
    assert report["revenue_per_offer"] == 7.5
    assert (report["converting_orders"], report["aov_converting_orders"]) == (2, 16.5)
    assert report["suppressions_by_rule"] == {"already_bought": 1, "email_cap": 1}
    assert report["no_offer_by_reason"] == {"no_eligible_candidates": 1}
    assert (report["emails_sent"], report["bounces"], report["unsubscribes"]) == (2, 1, 1)
    assert (report["bounce_rate"], report["unsubscribe_rate"]) == (0.3333, 0.5)
    assert report["latency_ms"] == {"count": 3, "p50": 40.0, "p99": 100.0}
    assert report["top_offered_products"] == [
        {"product_id": "P1", "name": "RED MUG", "offers": 2},
        {"product_id": "P2", "name": "RED MUG LARGE", "offers": 1},
        {"product_id": "P3", "name": None, "offers": 1},  # never named: the dashboard shows the id
    ]
    assert report["top_converting_products"] == [
        {"product_id": "P2", "name": "RED MUG LARGE", "conversions": 1, "revenue": 20.0},
        {"product_id": "P1", "name": "RED MUG", "conversions": 1, "revenue": 10.0},
    ]
    json.dumps(report)  # what `xsell report --json` prints


def test_by_offer_type_and_by_model_version(engine: Engine) -> None:
    report = offer_quality(engine)
    cross, up = report["by_offer_type"]["cross_sell"], report["by_offer_type"]["up_sell"]
    assert (cross["offers_sent"], cross["clicks"], cross["conversions"], cross["attributed_revenue"]) == (3, 2, 1, 10.0)
    assert (up["offers_sent"], up["clicks"], up["conversions"], up["attributed_revenue"]) == (1, 0, 1, 20.0)
    assert round(cross["revenue_per_offer"], 4) == 3.3333
    models = report["by_model_version"]
    assert {name: (m["offers_sent"], m["conversions"]) for name, m in models.items()} == {
        "1": (2, 2),
        "2": (1, 0),
        "none": (1, 0),
    }


def test_offers_on_request_are_reported_by_context(engine: Engine) -> None:
    asked = decision("R1", "C5", T0, ("P5", UP), ("P6", CROSS)).model_copy(update={"context": OfferContext.CHECKOUT})
    bought = purchase("B5", "C5", T0 + timedelta(hours=1), ("P5", 1, 12.0))
    with engine.begin() as db:
        record_batch(db, [(asked, 3_000)], [feedback(F.IMPRESSION, offer_id_for("R1", "P5"), "C5")], [(bought, 3_100)])
    contexts = offer_quality(engine)["by_context"]
    assert {
        name: (c["offers_sent"], c["impressions"], c["conversions"], c["attributed_revenue"])
        for name, c in contexts.items()
    } == {
        "post_purchase": (4, 2, 2, 30.0),  # the fixture's offers: follow-ups of purchases
        "checkout": (2, 1, 1, 12.0),
    }


def test_time_and_offer_type_filters(engine: Engine) -> None:
    later = offer_quality(engine, since=DECIDED + timedelta(seconds=1))
    assert (later["decisions"], later["offers_sent"], later["bounces"], later["conversions"]) == (1, 1, 1, 0)
    assert later["suppressions_by_rule"] == {} and later["latency_ms"]["count"] == 0
    earlier = offer_quality(engine, until=DECIDED + timedelta(seconds=1))
    assert (earlier["offers_sent"], earlier["conversions"], earlier["attributed_revenue"]) == (3, 2, 30.0)
    up = offer_quality(engine, offer_type="up_sell")
    assert (up["offers_sent"], up["conversions"], up["attributed_revenue"], list(up["by_offer_type"])) == (
        1,
        1,
        20.0,
        ["up_sell"],
    )


def test_offers_sent_per_day_by_type_sum_to_the_report(engine: Engine) -> None:
    series = offers_sent_per_day(engine)  # decided on two days, every purchase on T0's day
    assert series == {"days": ["2011-03-01"], "offer_types": {"cross_sell": [3], "up_sell": [1]}}
    by_type = offer_quality(engine)["by_offer_type"]
    assert {kind: sum(counts) for kind, counts in series["offer_types"].items()} == {
        kind: figures["offers_sent"] for kind, figures in by_type.items()
    }
    assert offers_sent_per_day(engine, offer_type="up_sell") == {
        "days": ["2011-03-01"],
        "offer_types": {"up_sell": [1]},
    }
    assert offers_sent_per_day(engine, since=DECIDED + timedelta(days=1)) == {  # filtered by decision time
        "days": ["2011-03-01"],
        "offer_types": {"cross_sell": [1]},
    }


def test_offers_sent_per_day_counts_purchase_days_and_fills_days_without_offers(tmp_path: Path) -> None:
    engine = open_facts(f"sqlite:///{tmp_path / 'gap.db'}")
    with engine.begin() as db:  # a fast replay: purchases two days apart decided in the same second
        record_decisions(
            db,
            [
                (decision("G1", "C1", T0, ("P1", UP)), None),
                (decision("G2", "C2", T0 + timedelta(days=2), ("P2", UP)), None),
            ],
        )
    assert offers_sent_per_day(engine) == {
        "days": ["2011-03-01", "2011-03-02", "2011-03-03"],
        "offer_types": {"up_sell": [1, 0, 1]},
    }
    assert offers_sent_per_day(engine, offer_type="cross_sell") == {"days": [], "offer_types": {}}


def test_latest_model_version_is_the_newest_offers(engine: Engine) -> None:
    assert latest_model_version(engine) == "none"  # A4, decided a day later, has no model version
    assert latest_model_version(engine, offer_type="up_sell") == "1"
    assert latest_model_version(engine, since=DECIDED + timedelta(days=5)) is None


def test_an_empty_database_reports_zeros(tmp_path: Path) -> None:
    report = offer_quality(open_facts(f"sqlite:///{tmp_path / 'empty.db'}"))
    assert (report["offers_sent"], report["clicks"], report["conversions"], report["attributed_revenue"]) == (
        0,
        0,
        0,
        0.0,
    )
    assert report["click_rate"] is None and report["by_offer_type"] == {} and report["latency_ms"]["p50"] is None


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5], 0.99) == 5.0
    assert (percentile(list(range(1, 101)), 0.5), percentile(list(range(1, 101)), 0.99)) == (50.0, 99.0)


def test_latency_over_time_has_the_headline_percentiles_per_bucket(engine: Engine) -> None:
    assert latency_over_time(engine) == {  # latencies 40, 100 and 10 ms, all decided at 09:00
        "bucket": "minute",
        "times": ["2024-05-01T09:00:00+00:00"],
        "p50": [40.0],
        "p90": [100.0],
        "p99": [100.0],
        "count": [3],
    }
    assert latency_over_time(engine, since=DECIDED + timedelta(seconds=1))["bucket"] is None


def _latencies(tmp_path: Path, *samples: tuple[timedelta, int]) -> Engine:
    """Facts with one decision per (decided after DECIDED, latency in ms) sample."""
    engine = open_facts(f"sqlite:///{tmp_path / 'latency.db'}")
    with engine.begin() as db:
        for i, (after, ms) in enumerate(samples):
            made = decision(f"L{i}", f"C{i}", T0, ("P1", CROSS), decided_at=DECIDED + after)
            record_batch(db, [(made, 1_000 + ms)], [], [(purchase(f"L{i}", f"C{i}", T0, ("P0", 1, 2.0)), 1_000)])
    return engine


@pytest.mark.parametrize(
    ("samples", "bucket", "times", "p50", "count"),
    [
        (  # 2 hours: per minute
            [(timedelta(0), 5), (timedelta(seconds=20), 50), (timedelta(seconds=59), 500), (timedelta(hours=2), 7)],
            "minute",
            ["2024-05-01T09:00:00+00:00", "2024-05-01T11:00:00+00:00"],
            [50.0, 7.0],
            [3, 1],
        ),
        (  # 3 days: per hour
            [(timedelta(0), 5), (timedelta(minutes=10), 50), (timedelta(days=3, minutes=5), 7)],
            "hour",
            ["2024-05-01T09:00:00+00:00", "2024-05-04T09:00:00+00:00"],
            [5.0, 7.0],
            [2, 1],
        ),
        (  # 40 days: per day
            [(timedelta(0), 5), (timedelta(hours=3), 50), (timedelta(days=40), 7)],
            "day",
            ["2024-05-01T00:00:00+00:00", "2024-06-10T00:00:00+00:00"],
            [5.0, 7.0],
            [2, 1],
        ),
    ],
)
def test_latency_buckets_follow_the_span_of_the_decisions(
    tmp_path: Path,
    samples: list[tuple[timedelta, int]],
    bucket: str,
    times: list[str],
    p50: list[float],
    count: list[int],
) -> None:
    series = latency_over_time(_latencies(tmp_path, *samples))
    assert (series["bucket"], series["times"], series["p50"], series["count"]) == (bucket, times, p50, count)
    assert all(a <= b <= c for a, b, c in zip(series["p50"], series["p90"], series["p99"], strict=True))
