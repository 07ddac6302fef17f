"""The live experiment's report: the statistics on hand-computed numbers, and the per-variant
figures read from facts written to a real (temporary) SQLite database."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from scipy.stats import binomtest, chi2_contingency
from sqlalchemy.engine import Engine

from services.feedback.experiment import (
    ArmCounts,
    arm_figures,
    experiment_report,
    mean_interval,
    two_proportion_p_value,
    verdict,
    wilson_interval,
)
from services.feedback.facts import open_facts, record_batch
from tests.services.feedback.factories import DECIDED, T0, decision, feedback, purchase
from xsell.offers import FeedbackType as F
from xsell.offers import OfferType, Variant, offer_id_for

CROSS, UP = OfferType.CROSS_SELL, OfferType.UP_SELL
CHAMPION, CHALLENGER = Variant.CHAMPION, Variant.CHALLENGER


def test_wilson_interval_on_hand_computed_cases() -> None:
    # 10/100: centre (0.1 + z²/200) / (1 + z²/100) = 0.11480, half-width 0.05957 (z = 1.95996)
    low, high = wilson_interval(10, 100)  # type: ignore[misc]
    assert (low, high) == pytest.approx((0.05523, 0.17437), abs=1e-5)
    # 0/10: the interval starts at 0 and its upper end is (z²/10) / (1 + z²/10) = 0.27753
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(5, 5)[1] == 1.0  # type: ignore[index]
    assert wilson_interval(0, 0) is None
    for successes, trials in ((10, 100), (1, 3), (2, 2), (37, 412)):  # the same as scipy's Wilson interval
        expected = binomtest(successes, trials).proportion_ci(0.95, method="wilson")
        assert wilson_interval(successes, trials) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_mean_interval_is_the_normal_approximation() -> None:
    # values 0, 0, 10, 20: mean 7.5, s² = (500 - 4 * 7.5²) / 3 = 91.667, half-width 1.95996 * sqrt(91.667 / 4) = 9.3826
    low, high = mean_interval(4, 30.0, 500.0)  # type: ignore[misc]
    assert (low, high) == pytest.approx((-1.8826, 16.8826), abs=1e-4)
    assert mean_interval(3, 15.0, 75.0) == pytest.approx((5.0, 5.0))  # no spread, no width
    assert mean_interval(1, 4.0, 16.0) is None and mean_interval(0, 0.0, 0.0) is None


def test_two_proportion_p_value_on_hand_computed_cases() -> None:
    # 30/100 vs 20/100: pooled 0.25, se sqrt(0.25 * 0.75 * 0.02) = 0.061237, z = 1.63299, p = 0.10247
    assert two_proportion_p_value(30, 100, 20, 100) == pytest.approx(0.10247, abs=1e-5)
    # 40/200 vs 20/200: pooled 0.15, se 0.035707, z = 2.80056, p = 0.00510
    assert two_proportion_p_value(40, 200, 20, 200) == pytest.approx(0.00510, abs=1e-5)
    assert two_proportion_p_value(20, 200, 40, 200) == two_proportion_p_value(40, 200, 20, 200)
    for table in ([[30, 70], [20, 80]], [[2, 0], [1, 2]]):  # the z-test is the chi-square test without correction
        p = chi2_contingency(table, correction=False).pvalue
        assert two_proportion_p_value(table[0][0], sum(table[0]), table[1][0], sum(table[1])) == pytest.approx(p)
    assert two_proportion_p_value(0, 50, 0, 80) == 1.0  # nothing converted anywhere: no difference
    assert two_proportion_p_value(3, 10, 0, 0) is None


@pytest.mark.parametrize(
    ("champion", "challenger", "expected"),
    [
        (ArmCounts(offers=100, converted=20), ArmCounts(), "no challenger traffic"),
        (ArmCounts(), ArmCounts(offers=100, converted=20), "no champion traffic"),
        (
            ArmCounts(offers=100, converted=20),
            ArmCounts(offers=100, converted=30),
            "challenger ahead, not yet significant (p=0.102)",
        ),
        (
            ArmCounts(offers=200, converted=40),
            ArmCounts(offers=200, converted=20),
            "champion ahead, significant (p=0.0051)",
        ),
        (
            ArmCounts(offers=200, converted=20),
            ArmCounts(offers=200, converted=100),
            "challenger ahead, significant (p<0.001)",
        ),
        (
            ArmCounts(offers=100, converted=10),
            ArmCounts(offers=50, converted=5),
            "no difference in conversion rate (p=1)",
        ),
    ],
)
def test_verdict_says_who_is_ahead_and_whether_it_is_significant(
    champion: ArmCounts, challenger: ArmCounts, expected: str
) -> None:
    assert verdict(champion, challenger) == expected


def test_arm_figures_round_and_keep_revenue_intervals_non_negative() -> None:
    figures = arm_figures(
        ArmCounts(offers=4, clicks=2, converted=2, conversions=3, revenue=30.0, revenue_squares=500.0)
    )
    assert figures == {
        "offers_sent": 4,
        "clicks": 2,
        "converted_offers": 2,
        "conversions": 3,
        "attributed_revenue": 30.0,
        "click_rate": 0.5,
        "click_rate_ci": [0.15, 0.85],
        "conversion_rate": 0.5,
        "conversion_rate_ci": [0.15, 0.85],
        "revenue_per_offer": 7.5,
        "revenue_per_offer_ci": [0.0, 16.8826],  # the normal interval's -1.8826 is no revenue
    }
    empty = arm_figures(ArmCounts())
    assert empty["click_rate"] is None and empty["conversion_rate_ci"] is None and empty["revenue_per_offer"] is None


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """Champion (version 3): 2 decisions, 3 offers, 1 clicked, 1 converted (10.0). Challenger
    (version 4): 2 decisions (one without offers), 2 offers, 1 clicked, both converted (7.5 and
    4.0). One offer from before variants, converted too."""
    engine = open_facts(f"sqlite:///{tmp_path / 'facts.db'}")
    decisions = [
        decision("K1", "C1", T0, ("P1", CROSS), ("P2", UP), model_version="3", variant=CHAMPION),
        decision("K2", "C2", T0, ("P1", CROSS), model_version="3", variant=CHAMPION),
        decision("H1", "C3", T0, ("P1", CROSS), ("P3", CROSS), model_version="4", variant=CHALLENGER),
        decision("H2", "C4", T0, model_version="4", variant=CHALLENGER),
        decision("N1", "C5", T0, ("P1", CROSS), model_version="2"),
    ]
    events = [
        feedback(F.CLICK, offer_id_for("K1", "P1")),
        feedback(F.CLICK, offer_id_for("K1", "P1"), salt="again"),  # one offer clicked twice counts once
        feedback(F.EMAIL_CLICKED, offer_id_for("H1", "P3"), "C3"),
        feedback(F.IMPRESSION, offer_id_for("K2", "P1"), "C2"),  # seen is not clicked
    ]
    bought = [
        (purchase("B1", "C1", T0 + timedelta(days=1), ("P1", 2, 5.0)), None),
        (purchase("B3", "C3", T0 + timedelta(days=2), ("P3", 1, 7.5), ("P1", 1, 4.0)), None),
        (purchase("B5", "C5", T0 + timedelta(days=1), ("P1", 1, 3.0)), None),
    ]
    with engine.begin() as db:
        record_batch(db, [(d, None) for d in decisions], events, bought)
    return engine


def test_report_per_variant_from_the_facts(engine: Engine) -> None:
    report = experiment_report(engine)
    champion, challenger = report["variants"]["champion"], report["variants"]["challenger"]
    assert {k: champion[k] for k in ("decisions", "model_versions", "offers_sent", "clicks", "converted_offers")} == {
        "decisions": 2,
        "model_versions": ["3"],
        "offers_sent": 3,
        "clicks": 1,
        "converted_offers": 1,
    }
    assert (champion["attributed_revenue"], champion["click_rate"], champion["revenue_per_offer"]) == (
        10.0,
        0.3333,
        3.3333,
    )
    # revenues 10, 0, 0: s² = (100 - 3 * 3.333²) / 2 = 33.333, half-width 1.95996 * sqrt(33.333 / 3) = 6.5332
    assert champion["revenue_per_offer_ci"] == [0.0, 9.8665]
    assert {k: challenger[k] for k in ("decisions", "model_versions", "offers_sent", "clicks", "converted_offers")} == {
        "decisions": 2,
        "model_versions": ["4"],
        "offers_sent": 2,
        "clicks": 1,
        "converted_offers": 2,
    }
    assert (challenger["conversions"], challenger["attributed_revenue"], challenger["conversion_rate"]) == (
        2,
        11.5,
        1.0,
    )
    # revenues 7.5 and 4.0: mean 5.75, s² = 6.125, half-width 1.95996 * sqrt(6.125 / 2) = 3.4299
    assert challenger["revenue_per_offer_ci"] == [2.3201, 9.1799]
    assert challenger["conversion_rate_ci"] == [0.3424, 1.0]  # Wilson 2/2
    assert champion["conversion_rate_ci"] == [0.0615, 0.7923]  # Wilson 1/3
    assert report["offers_without_variant"] == 1
    # 2/2 vs 1/3: pooled 0.6, se sqrt(0.24 * (1/2 + 1/3)) = 0.44721, z = 1.49071, p = 0.13604
    assert report["p_value"] == pytest.approx(0.13604, abs=1e-5)
    assert report["verdict"] == "challenger ahead, not yet significant (p=0.136)"
    json.dumps(report)  # what `xsell experiment status --json` prints and the dashboard reads


def test_report_filters_by_decision_time_and_offer_type(engine: Engine) -> None:
    before = experiment_report(engine, until=DECIDED)
    assert before["variants"]["champion"]["offers_sent"] == before["variants"]["champion"]["decisions"] == 0
    assert before["verdict"] == "no challenger traffic" and before["p_value"] is None
    assert experiment_report(engine, since=DECIDED)["variants"] == experiment_report(engine)["variants"]
    up = experiment_report(engine, offer_type="up_sell")
    assert (up["variants"]["champion"]["offers_sent"], up["variants"]["challenger"]["offers_sent"]) == (1, 0)
    assert up["verdict"] == "no challenger traffic" and up["offers_without_variant"] == 0


def test_an_empty_database_reports_both_variants_without_traffic(tmp_path: Path) -> None:
    report = experiment_report(open_facts(f"sqlite:///{tmp_path / 'empty.db'}"))
    assert list(report["variants"]) == ["champion", "challenger"]
    assert report["variants"]["challenger"]["offers_sent"] == 0 and report["verdict"] == "no challenger traffic"
