"""The live experiment's report: champion against challenger, per variant, from the facts database.

The offer service lets the challenger (the model version under the challenger alias) decide for a
stable share of the customers; every decision and offer records the variant that decided
(`services.feedback.facts`). The cohort is the offers decided in [since, until) (decision time,
UTC), optionally of one offer type, with their clicks and conversions whenever they happened, as in
`services.feedback.report`: clicks are offers clicked (in the app or in the e-mail, each offer once),
converted offers are offers with at least one attributed purchase line, rates are per offer sent.

Statistics, all at 95%: click and conversion rates with Wilson score intervals; revenue per offer
with a normal-approximation interval over the offers (each offer's attributed revenue, zero when it
did not convert: zero-inflated and skewed, so the interval is rough while conversions are few; its
lower end is cut at zero); the verdict compares the conversion rates with a two-sided
two-proportion z-test (pooled), significant when p < 0.05. Offers decided before variants were
recorded count in neither arm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from services.feedback.facts import conversions, decisions, feedback, offers
from services.feedback.report import _between
from xsell.offers import FeedbackType, Variant

CONFIDENCE = 0.95
ALPHA = 0.05
CLICKS = (FeedbackType.CLICK.value, FeedbackType.EMAIL_CLICKED.value)


@dataclass(frozen=True)
class ArmCounts:
    """What one variant's offers did: offers sent, offers clicked, offers converted, purchase lines
    attributed, and the attributed revenue summed over offers and its sum of squares."""

    offers: int = 0
    clicks: int = 0
    converted: int = 0
    conversions: int = 0
    revenue: float = 0.0
    revenue_squares: float = 0.0


def _z(confidence: float) -> float:
    """The two-sided standard normal quantile of a confidence level (1.96 at 95%)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None without trials)."""
    if trials == 0:
        return None
    z, p = _z(confidence), successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(
    count: int, total: float, sum_squares: float, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The normal-approximation interval of a mean, mean ± z·s/√n with the sample standard
    deviation s, from the count, sum and sum of squares of the values (None under two values)."""
    if count < 2:
        return None
    mean = total / count
    variance = max(0.0, (sum_squares - count * mean * mean) / (count - 1))
    half = _z(confidence) * math.sqrt(variance / count)
    return mean - half, mean + half


def two_proportion_p_value(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test that both proportions are equal (None
    when either has no trials; 1 when the pooled proportion is 0 or 1, both then being equal)."""
    if trials_a == 0 or trials_b == 0:
        return None
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    if pooled in (0.0, 1.0):
        return 1.0
    error = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    z = (successes_a / trials_a - successes_b / trials_b) / error
    return 2 * NormalDist().cdf(-abs(z))


def verdict(champion: ArmCounts, challenger: ArmCounts, alpha: float = ALPHA) -> str:
    """The challenger against the champion on conversion rate, in words: which is ahead and whether
    the difference is significant (two-proportion z-test, p < alpha), or which arm has no traffic."""
    if challenger.offers == 0:
        return "no challenger traffic"
    if champion.offers == 0:
        return "no champion traffic"
    p = two_proportion_p_value(challenger.converted, challenger.offers, champion.converted, champion.offers)
    assert p is not None  # both arms have offers
    shown = "p<0.001" if p < 0.001 else f"p={p:.3g}"
    difference = challenger.converted / challenger.offers - champion.converted / champion.offers
    if difference == 0:
        return f"no difference in conversion rate ({shown})"
    leader = Variant.CHALLENGER if difference > 0 else Variant.CHAMPION
    return f"{leader} ahead, {'significant' if p < alpha else 'not yet significant'} ({shown})"


def arm_figures(counts: ArmCounts) -> dict[str, Any]:
    """One variant's figures with their 95% intervals (JSON-ready; rates and intervals None without offers)."""
    sent = counts.offers
    revenue_ci = mean_interval(sent, counts.revenue, counts.revenue_squares)
    if revenue_ci is not None:  # revenue is never negative: the normal interval's lower end may be
        revenue_ci = max(0.0, revenue_ci[0]), revenue_ci[1]
    return {
        "offers_sent": sent,
        "clicks": counts.clicks,
        "converted_offers": counts.converted,
        "conversions": counts.conversions,
        "attributed_revenue": round(counts.revenue, 2),
        "click_rate": round(counts.clicks / sent, 4) if sent else None,
        "click_rate_ci": _rounded(wilson_interval(counts.clicks, sent), 4),
        "conversion_rate": round(counts.converted / sent, 4) if sent else None,
        "conversion_rate_ci": _rounded(wilson_interval(counts.converted, sent), 4),
        "revenue_per_offer": round(counts.revenue / sent, 4) if sent else None,
        "revenue_per_offer_ci": _rounded(revenue_ci, 4),
    }


def experiment_report(
    engine: Engine, since: datetime | None = None, until: datetime | None = None, offer_type: str | None = None
) -> dict[str, Any]:
    """Champion against challenger on the offers decided in [since, until) (of one type): per
    variant the decisions, the model versions seen, `arm_figures`; the conversion-rate p-value and
    the `verdict`; and the offers that carry no variant (JSON-ready)."""
    cohort = _between(offers.c.decided_at, since, until)
    if offer_type is not None:
        cohort.append(offers.c.offer_type == offer_type)
    per_offer = (
        select(conversions.c.offer_id, func.count().label("n"), func.sum(conversions.c.revenue).label("revenue"))
        .group_by(conversions.c.offer_id)
        .subquery()
    )
    revenue = func.coalesce(per_offer.c.revenue, 0.0)
    clicked = offers.c.offer_id.in_(select(feedback.c.offer_id).where(feedback.c.type.in_(CLICKS)))
    counts_query = (
        select(
            offers.c.variant,
            func.count(),
            func.sum(case((clicked, 1), else_=0)),
            func.sum(case((per_offer.c.n.is_not(None), 1), else_=0)),
            func.coalesce(func.sum(per_offer.c.n), 0),
            func.coalesce(func.sum(revenue), 0.0),
            func.coalesce(func.sum(revenue * revenue), 0.0),
        )
        .select_from(offers.outerjoin(per_offer, per_offer.c.offer_id == offers.c.offer_id))
        .where(*cohort)
        .group_by(offers.c.variant)
    )
    with engine.connect() as db:
        counts = {
            variant: ArmCounts(int(n), int(c or 0), int(v or 0), int(k or 0), float(r or 0.0), float(s or 0.0))
            for variant, n, c, v, k, r, s in db.execute(counts_query)
        }
        decided = {
            variant: int(n)
            for variant, n in db.execute(
                select(decisions.c.variant, func.count())
                .where(*_between(decisions.c.decided_at, since, until))
                .group_by(decisions.c.variant)
            )
        }
        versions: dict[str, set[str]] = {}
        for variant, version in db.execute(select(offers.c.variant, offers.c.model_version).where(*cohort).distinct()):
            versions.setdefault(variant, set()).add("none" if version is None else str(version))
    champion, challenger = (counts.get(variant.value, ArmCounts()) for variant in Variant)
    p_value = two_proportion_p_value(challenger.converted, challenger.offers, champion.converted, champion.offers)
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "offer_type": offer_type,
        "variants": {
            variant.value: {
                "decisions": decided.get(variant.value, 0),
                "model_versions": sorted(versions.get(variant.value, ())),
                **arm_figures(counts.get(variant.value, ArmCounts())),
            }
            for variant in Variant
        },
        "offers_without_variant": counts.get(None, ArmCounts()).offers,
        "p_value": None if p_value is None else round(p_value, 6),
        "verdict": verdict(champion, challenger),
    }


def _rounded(interval: tuple[float, float] | None, digits: int) -> list[float] | None:
    """An interval as a JSON pair, rounded."""
    return None if interval is None else [round(interval[0], digits), round(interval[1], digits)]
