"""The order lines the fold state keeps: the backfill's history and every applied event's lines,
each once, in the canonical shape (a real embedded Feast store behind the pipeline step)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

import features.state as state_module
from features.aggregates import FeatureFold
from features.pipeline import FeaturePipeline
from features.state import FoldStateStore
from tests.conftest import EventFactory
from tests.features.orders import START, backfilled_home
from xsell.events import EventType, LineItem
from xsell.history import LINE_COLUMNS, read_purchase_history
from xsell.settings import Settings


@pytest.fixture
def backfilled(tmp_path: Path) -> tuple[Settings, pd.DataFrame]:
    return backfilled_home(tmp_path)


def _state(settings: Settings) -> FoldStateStore:
    return FoldStateStore(settings.fold_state_db_url)


def test_backfill_keeps_the_history_lines_in_canonical_shape(backfilled: tuple[Settings, pd.DataFrame]) -> None:
    settings, _ = backfilled
    history = read_purchase_history(settings.home / "orders.csv").lines
    kept = _state(settings).order_lines()
    assert list(kept.columns) == list(LINE_COLUMNS)
    assert str(kept["ordered_at"].dt.tz) == "UTC"
    assert kept["ordered_at"].is_monotonic_increasing
    columns = [
        "order_id",
        "customer_id",
        "product_id",
        "product_name",
        "quantity",
        "unit_price",
        "ordered_at",
        "is_return",
    ]
    pd.testing.assert_frame_equal(kept[columns].astype(object), history[columns].astype(object))
    assert _state(settings).line_coverage() == (history["order_id"].nunique(), history["order_id"].nunique())


def test_applied_lines_are_kept_exactly_once_across_a_reapplied_batch(
    backfilled: tuple[Settings, pd.DataFrame], make_event: EventFactory
) -> None:
    settings, _ = backfilled
    before = len(_state(settings).order_lines())
    later = START + timedelta(days=60)
    batch = [
        make_event(
            customer_id="C1",
            occurred_at=later,
            lines=(
                LineItem(product_id="11", name="TEST MUG 11", quantity=1, unit_price=2.5),
                LineItem(product_id="12", name="TEST MUG 12", quantity=3, unit_price=1.25),
            ),
        ),
        make_event(
            customer_id=None,
            occurred_at=later + timedelta(minutes=5),
            lines=(LineItem(product_id="13", quantity=2, unit_price=4.0),),
        ),
        make_event(
            order_id="O1",
            event_type=EventType.ORDER_CANCELLED,
            customer_id="C2",
            occurred_at=later + timedelta(minutes=9),
            lines=(LineItem(product_id="14", quantity=1, unit_price=4.0),),
        ),
    ]
    pipeline = FeaturePipeline(settings)
    pipeline.apply(batch + batch[:1])  # one event twice within the batch
    pipeline.apply(batch)  # re-delivered to the same process
    FeaturePipeline(settings).apply(batch)  # re-delivered after a restart (state reloaded from disk)

    lines = _state(settings).order_lines()
    assert len(lines) == before + 4
    new = lines[lines["ordered_at"] >= pd.Timestamp(later)]
    assert new["order_id"].tolist() == [batch[0].order_id, batch[0].order_id, batch[1].order_id, "O1"]
    assert new["product_id"].tolist() == ["11", "12", "13", "14"]
    assert new["quantity"].tolist() == [1, 3, 2, 1]
    assert new["is_return"].tolist() == [False, False, False, True]
    assert new["customer_id"].tolist()[1:3] == ["C1", None]
    assert new["ordered_at"].iloc[0] == pd.Timestamp(later)
    assert len(_state(settings).order_lines(since=later + timedelta(minutes=5))) == 2
    applied, with_lines = _state(settings).line_coverage()
    assert applied == with_lines


def test_the_state_saved_without_lines_is_visible_as_missing_coverage(tmp_path: Path, make_event: EventFactory) -> None:
    store = FoldStateStore(f"sqlite:///{tmp_path / 'state.db'}")
    fold = FeatureFold()
    events = [make_event(), make_event()]
    out = fold.apply(events)
    store.save(fold, fold.customers, fold.products, out.applied)  # ids but no lines, as before lines were kept
    assert store.line_coverage() == (2, 0)
    assert store.order_lines().empty and list(store.order_lines().columns) == list(LINE_COLUMNS)
    store.save(fold, [], [], [], events=events)
    store.save(fold, [], [], [], events=events)
    assert store.line_coverage() == (2, 2)
    assert len(store.order_lines()) == 2


def test_a_batch_whose_transaction_failed_counts_in_full_when_it_is_retried(
    backfilled: tuple[Settings, pd.DataFrame], make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = backfilled
    before = _state(settings).load().customers["C1"].order_count
    later = START + timedelta(days=60)
    batch = [make_event(customer_id="C1", occurred_at=later + timedelta(minutes=n)) for n in range(3)]
    pipeline = FeaturePipeline(settings)

    def store_unreachable(*args: object, **kwargs: object) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:  # the transaction fails after the fold took the batch in
        patch.setattr(state_module, "add_lines", store_unreachable)
        with pytest.raises(sqlite3.OperationalError):
            pipeline.apply(batch)
    pipeline.apply(batch)  # the consumer loop retries a batch that failed on the store

    assert _state(settings).load().customers["C1"].order_count == before + 3
    assert pipeline.stats.events_applied == 3
    assert len(_state(settings).order_lines(since=later)) == 3
