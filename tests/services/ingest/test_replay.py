"""Replay pacing and event selection (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.ingest.replay import Pacing, select_events
from xsell.history import read_purchase_history
from xsell.settings import REPO_ROOT


def test_pacing_by_rate_and_speedup() -> None:
    first = datetime(2011, 1, 1, tzinfo=UTC)
    assert Pacing(rate=10).delay_until(5, first, first, 100.0) == pytest.approx(100.5)
    later = first + timedelta(days=1)
    assert Pacing(speedup=86_400).delay_until(1, later, first, 100.0) == pytest.approx(101.0)
    assert Pacing().delay_until(999, later, first, 100.0) == 100.0
    assert Pacing(rate=10).paced and Pacing(speedup=2).paced and not Pacing().paced


def test_pacing_refuses_both_or_non_positive() -> None:
    with pytest.raises(ValueError, match="not both"):
        Pacing(rate=1, speedup=2)
    with pytest.raises(ValueError, match="positive"):
        Pacing(rate=0)


def test_select_events_applies_since_and_limit() -> None:
    history = read_purchase_history(REPO_ROOT / "data" / "online_retail_sample.parquet")
    since = datetime(2011, 11, 1, tzinfo=UTC)
    events = list(select_events(history, since=since, limit=50))
    assert len(events) == 50
    assert all(e.occurred_at >= since for e in events)
