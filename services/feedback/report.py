"""The offer-quality report: what `xsell report` prints and the ops dashboard charts.

Read from the facts database (`services.feedback.facts`). The cohort is the offers decided in
[since, until) (decision time, UTC), optionally of one offer type; their feedback and conversions
count whenever they happened. Definitions:

- offers_sent: offers in the cohort (every offer of a decision goes out on at least one channel).
- impressions: offers seen: an in-app `impression` of the offer, or an `email_opened` of its e-mail.
- clicks: offers clicked (`click` in the app or `email_clicked`), each offer once.
- conversions: purchase lines attributed to cohort offers; converted_offers: offers with at least one.
- rates are per offer sent; revenue_per_offer = attributed_revenue / offers_sent;
  aov_converting_orders: mean value of the orders that contain a converted line.
- e-mail: emails_sent / bounces count messages (decisions); bounce_rate = bounces / (sent + bounces);
  unsubscribe_rate = customers unsubscribing in the period / customers e-mailed in the cohort.
- latency_ms: Kafka timestamp of the decision record minus that of its purchase record (p50, p99).

`offers_sent_per_day` gives the dashboard's time series of the same cohort (UTC days of the
purchases offered after, per offer type), `latency_over_time` the latency percentiles per minute,
hour or day of decision, and `latest_model_version` the version that made the cohort's newest offer
(the serving one). Top offered and converting products carry the product's name (None if unknown).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.engine import Connection, Engine

from services.feedback.facts import conversions, decisions, feedback, offers, purchases, suppressions
from xsell.offers import FeedbackType, OfferContext, as_utc

# latency buckets (name, width, the longest span of decisions it is chosen for): the first that fits
LATENCY_BUCKETS = (
    ("minute", timedelta(minutes=1), timedelta(hours=6)),
    ("hour", timedelta(hours=1), timedelta(days=30)),
    ("day", timedelta(days=1), timedelta.max),
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PER_OFFER = ("offers_sent", "impressions", "clicks", "converted_offers", "conversions", "attributed_revenue")


def offer_quality(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    offer_type: str | None = None,
    top: int = 10,
) -> dict[str, Any]:
    """The offer-quality figures of the offers decided in [since, until) (JSON-ready)."""
    cohort = _cohort(since, until, offer_type)
    decided = _between(decisions.c.decided_at, since, until)
    with engine.connect() as db:
        overall = _offer_metrics(db, cohort)[None]
        by_type = _offer_metrics(db, cohort, offers.c.offer_type)
        by_model = _offer_metrics(db, cohort, offers.c.model_version)
        by_context = _offer_metrics(db, cohort, func.coalesce(offers.c.context, OfferContext.POST_PURCHASE.value))
        cohort_ids = select(offers.c.offer_id).where(*cohort)
        converting_orders = select(conversions.c.order_id).where(conversions.c.offer_id.in_(cohort_ids))
        orders = db.execute(
            select(func.count(), func.avg(purchases.c.total)).where(purchases.c.order_id.in_(converting_orders))
        ).one()
        report: dict[str, Any] = {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "offer_type": offer_type,
            "decisions": db.scalar(select(func.count()).select_from(decisions).where(*decided)),
            **overall,
            "converting_orders": orders[0],
            "aov_converting_orders": _round(orders[1], 2),
            "by_offer_type": {_label(key): value for key, value in sorted(by_type.items(), key=_key)},
            "by_model_version": {_label(key): value for key, value in sorted(by_model.items(), key=_key)},
            "by_context": {_label(key): value for key, value in sorted(by_context.items(), key=_key)},
            "suppressions_by_rule": _counts(
                db,
                select(suppressions.c.rule, func.count())
                .join(decisions, decisions.c.decision_id == suppressions.c.decision_id)
                .where(*decided)
                .group_by(suppressions.c.rule),
            ),
            "no_offer_by_reason": _counts(
                db,
                select(decisions.c.no_offer_reason, func.count())
                .where(decisions.c.no_offer_reason.is_not(None), *decided)
                .group_by(decisions.c.no_offer_reason),
            ),
            **_email(db, cohort, since, until),
            "latency_ms": _latency(db, decided),
            "top_offered_products": [
                {"product_id": product, "name": name, "offers": n}
                for product, name, n in db.execute(
                    select(offers.c.product_id, func.max(offers.c.name), func.count().label("n"))
                    .where(*cohort)
                    .group_by(offers.c.product_id)
                    .order_by(func.count().desc(), offers.c.product_id)
                    .limit(top)
                )
            ],
            "top_converting_products": [
                {"product_id": product, "name": name, "conversions": n, "revenue": _round(revenue, 2)}
                for product, name, n, revenue in db.execute(
                    select(
                        conversions.c.product_id,
                        func.max(offers.c.name),
                        func.count(),
                        func.sum(conversions.c.revenue),
                    )
                    .join(offers, offers.c.offer_id == conversions.c.offer_id)
                    .where(*cohort)
                    .group_by(conversions.c.product_id)
                    .order_by(func.count().desc(), func.sum(conversions.c.revenue).desc(), conversions.c.product_id)
                    .limit(top)
                )
            ],
        }
    return report


def offers_sent_per_day(
    engine: Engine, since: datetime | None = None, until: datetime | None = None, offer_type: str | None = None
) -> dict[str, Any]:
    """Offers of the cohort per UTC day of the purchase they answer (`occurred_at`: a fast replay
    decides weeks of purchases within minutes) and offer type (JSON-ready); the cohort is still
    the offers decided in [since, until).

    `days` runs without gaps from the first to the last day with an offer; `offer_types` maps each
    offer type present to its count on each of those days (zero on days without).
    """
    day = _utc_day(offers.c.occurred_at, engine.dialect.name)
    query = (
        select(day.label("day"), offers.c.offer_type, func.count())
        .where(*_cohort(since, until, offer_type))
        .group_by(day, offers.c.offer_type)
    )
    with engine.connect() as db:
        counts = {(_as_date(d), kind): int(n) for d, kind, n in db.execute(query)}
    if not counts:
        return {"days": [], "offer_types": {}}
    first, last = min(d for d, _ in counts), max(d for d, _ in counts)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    kinds = sorted({kind for _, kind in counts})
    return {
        "days": [d.isoformat() for d in days],
        "offer_types": {kind: [counts.get((d, kind), 0) for d in days] for kind in kinds},
    }


def latest_model_version(
    engine: Engine, since: datetime | None = None, until: datetime | None = None, offer_type: str | None = None
) -> str | None:
    """The model version of the cohort's most recently decided offer ("none" without a version; None if no offer)."""
    query = (
        select(offers.c.model_version)
        .where(*_cohort(since, until, offer_type))
        .order_by(offers.c.decided_at.desc(), offers.c.offer_id)
        .limit(1)
    )
    with engine.connect() as db:
        found = db.execute(query).first()
    return None if found is None else _label(found[0])


def latency_over_time(engine: Engine, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Decision latency (ms) p50, p90 and p99 and the sample count per bucket of decision time
    (UTC) over the decisions in [since, until) (JSON-ready). The bucket is a minute when those
    decisions span at most 6 hours, an hour up to 30 days, a day beyond; `times` are the starts of
    the buckets that have samples, in order (none: `bucket` None)."""
    with engine.connect() as db:
        samples = _latency_samples(db, _between(decisions.c.decided_at, since, until))
    if not samples:
        return {"bucket": None, "times": [], "p50": [], "p90": [], "p99": [], "count": []}
    span = max(at for at, _ in samples) - min(at for at, _ in samples)
    bucket, width = next((name, width) for name, width, longest in LATENCY_BUCKETS if span <= longest)
    grouped: dict[datetime, list[int]] = {}
    for at, ms in samples:
        grouped.setdefault(EPOCH + (at - EPOCH) // width * width, []).append(ms)
    times = sorted(grouped)
    values = [sorted(grouped[t]) for t in times]
    return {
        "bucket": bucket,
        "times": [t.isoformat() for t in times],
        **{f"p{round(100 * q)}": [percentile(v, q) for v in values] for q in (0.50, 0.90, 0.99)},
        "count": [len(v) for v in values],
    }


def newest_purchase_at(engine: Engine) -> datetime | None:
    """When the newest purchase in the facts happened (None without purchases): the ops dashboard
    measures the serving candidate index's age against it."""
    with engine.connect() as db:
        newest = db.execute(select(func.max(purchases.c.occurred_at))).scalar()
    return None if newest is None else as_utc(newest)


def _utc_day(column: Any, dialect: str) -> Any:
    """The UTC calendar day of a stored timestamp, in SQL."""
    if dialect == "postgresql":  # timestamptz: the day depends on the session time zone unless pinned
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite and others store the UTC wall time (facts are written in UTC)


def _as_date(value: Any) -> date:
    """A day from the database (a date, or ISO text on SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _cohort(since: datetime | None, until: datetime | None, offer_type: str | None) -> list[ColumnElement[bool]]:
    """Conditions on `offers` selecting the cohort."""
    conditions = _between(offers.c.decided_at, since, until)
    if offer_type is not None:
        conditions.append(offers.c.offer_type == offer_type)
    return conditions


def _between(column: Any, since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    """column in [since, until), bounds in UTC (naive bounds are taken as UTC)."""
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(column >= as_utc(since))
    if until is not None:
        conditions.append(column < as_utc(until))
    return conditions


def _feedback_of(*types: FeedbackType, column: Any = None) -> Any:
    """Ids (offer ids by default) that have feedback of these types."""
    return select(column if column is not None else feedback.c.offer_id).where(
        feedback.c.type.in_([t.value for t in types])
    )


def _offer_metrics(db: Connection, cohort: list[ColumnElement[bool]], group: Any = None) -> dict[Any, dict[str, Any]]:
    """Per-offer figures of the cohort, overall (key None) or per value of `group`."""
    per_offer = (
        select(conversions.c.offer_id, func.count().label("n"), func.sum(conversions.c.revenue).label("revenue"))
        .group_by(conversions.c.offer_id)
        .subquery()
    )
    seen = or_(
        offers.c.offer_id.in_(_feedback_of(FeedbackType.IMPRESSION)),
        offers.c.decision_id.in_(_feedback_of(FeedbackType.EMAIL_OPENED, column=feedback.c.decision_id)),
    )
    clicked = offers.c.offer_id.in_(_feedback_of(FeedbackType.CLICK, FeedbackType.EMAIL_CLICKED))
    columns = [
        func.count(),
        func.sum(case((seen, 1), else_=0)),
        func.sum(case((clicked, 1), else_=0)),
        func.sum(case((per_offer.c.n.is_not(None), 1), else_=0)),
        func.coalesce(func.sum(per_offer.c.n), 0),
        func.coalesce(func.sum(per_offer.c.revenue), 0.0),
    ]
    query = (
        select(*([group] if group is not None else []), *columns)
        .select_from(offers.outerjoin(per_offer, per_offer.c.offer_id == offers.c.offer_id))
        .where(*cohort)
    )
    if group is not None:
        query = query.group_by(group)
    result: dict[Any, dict[str, Any]] = {}
    for row in db.execute(query):
        key, values = (row[0], row[1:]) if group is not None else (None, row)
        figures: dict[str, Any] = dict(zip(PER_OFFER, (int(v or 0) for v in values[:5]), strict=False))
        figures["attributed_revenue"] = _round(values[5] or 0.0, 2)
        sent = figures["offers_sent"]
        figures.update(
            {
                "impression_rate": _ratio(figures["impressions"], sent),
                "click_rate": _ratio(figures["clicks"], sent),
                "conversion_rate": _ratio(figures["converted_offers"], sent),
                "revenue_per_offer": _round(figures["attributed_revenue"] / sent, 4) if sent else None,
            }
        )
        result[key] = figures
    return result


def _email(
    db: Connection, cohort: list[ColumnElement[bool]], since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    """E-mails sent and bounced (messages), unsubscribes (customers) and their rates."""

    def messages(kind: FeedbackType, column: Any) -> int:
        query = (
            select(func.count(func.distinct(column)))
            .select_from(offers.join(feedback, feedback.c.offer_id == offers.c.offer_id))
            .where(feedback.c.type == kind.value, *cohort)
        )
        return int(db.scalar(query) or 0)

    sent = messages(FeedbackType.EMAIL_SENT, offers.c.decision_id)
    bounces = messages(FeedbackType.BOUNCED, offers.c.decision_id)
    emailed_customers = messages(FeedbackType.EMAIL_SENT, offers.c.customer_id)
    unsubscribes = int(
        db.scalar(
            select(func.count(func.distinct(feedback.c.customer_id))).where(
                feedback.c.type == FeedbackType.UNSUBSCRIBED.value, *_between(feedback.c.occurred_at, since, until)
            )
        )
        or 0
    )
    return {
        "emails_sent": sent,
        "bounces": bounces,
        "unsubscribes": unsubscribes,
        "bounce_rate": _ratio(bounces, sent + bounces),
        "unsubscribe_rate": _ratio(unsubscribes, emailed_customers),
    }


def _latency_samples(db: Connection, decided: list[ColumnElement[bool]]) -> list[tuple[datetime, int]]:
    """(decision time, latency in ms) of the decisions whose record and purchase record both have a
    Kafka timestamp: the decision record's minus the purchase record's."""
    query = (
        select(decisions.c.decided_at, decisions.c.record_ts_ms - purchases.c.record_ts_ms)
        .join(purchases, purchases.c.event_id == decisions.c.event_id)
        .where(and_(decisions.c.record_ts_ms.is_not(None), purchases.c.record_ts_ms.is_not(None)), *decided)
    )
    return [(as_utc(at), int(ms)) for at, ms in db.execute(query)]


def _latency(db: Connection, decided: list[ColumnElement[bool]]) -> dict[str, Any]:
    """Decision latency percentiles from the two records' Kafka timestamps."""
    values = sorted(ms for _, ms in _latency_samples(db, decided))
    return {"count": len(values), "p50": percentile(values, 0.50), "p99": percentile(values, 0.99)}


def percentile(sorted_values: list[int] | list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ascending values (None when empty)."""
    if not sorted_values:
        return None
    return float(sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)])


def _counts(db: Connection, query: Any) -> dict[str, int]:
    """A (label, count) query as a dict, largest first."""
    return dict(sorted(((str(k), int(n)) for k, n in db.execute(query)), key=lambda kv: (-kv[1], kv[0])))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None, digits: int) -> float | None:
    return round(float(value), digits) if value is not None else None


def _key(item: tuple[Any, Any]) -> str:
    return _label(item[0])


def _label(key: Any) -> str:
    """A group's name in the report (offers decided without a model version: "none")."""
    return "none" if key is None else str(key)
