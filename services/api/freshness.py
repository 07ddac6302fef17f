"""How fresh what serves is, for the dashboard's freshness panel (`/dashboard/freshness`).

The champion's age since it was registered (wall clock), the age of the candidate index it serves
and how far the purchase archive is behind, both against the newest purchase in the offer-quality
facts (so a replay of old purchases reads as it would live), and each consumer group's lag on the
broker (`infra.kafka.lag`). Prometheus has the same from the services' own metrics
(`infra/prometheus/alerts.yml`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine

from features.archive import purchase_archive
from services.feedback.report import newest_purchase_at


def newest_archived_purchase(engine: Engine) -> datetime | None:
    """Event time of the newest line in the purchase archive (`features.archive`); None while it is
    empty or not created yet."""
    if not inspect(engine).has_table(purchase_archive.name):
        return None
    with engine.connect() as db:
        newest = db.execute(select(func.max(purchase_archive.c.ordered_at_us))).scalar()
    return None if newest is None else datetime.fromtimestamp(newest / 1_000_000, UTC)


def age_s(later: datetime | None, earlier: datetime | None) -> float | None:
    """Seconds from `earlier` to `later`, never negative; None when either is unknown."""
    if later is None or earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds())


def freshness(
    serving: Mapping[str, object], facts: Engine, lag: dict[str, int | None] | None, now: datetime
) -> dict[str, Any]:
    """The freshness panel's figures from what the registry says serves (`models.index_source.serving_index`), the
    facts and the archive in `facts`' database, and the consumer lag by group (each null when
    unknown; `consumer_lag` null as a whole when Kafka is unreachable)."""
    registered, as_of = (
        datetime.fromisoformat(str(value)) if value is not None else None
        for value in (serving.get("model_registered_at"), serving.get("index_as_of"))
    )
    newest = newest_purchase_at(facts)
    archived = newest_archived_purchase(facts)
    return {
        "model_version": serving.get("model_version"),
        "model_registered_at": registered.isoformat() if registered else None,
        "model_age_s": age_s(now, registered),
        "index_as_of": as_of.isoformat() if as_of else None,
        "index_age_s": age_s(newest, as_of),
        "newest_purchase_at": newest.isoformat() if newest else None,
        "newest_archived_purchase_at": archived.isoformat() if archived else None,
        "archive_behind_s": age_s(newest, archived),
        "consumer_lag": lag,
    }
