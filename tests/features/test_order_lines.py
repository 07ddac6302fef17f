"""Where the order lines of the feature store's history go (the purchase archive, once each), and
a streaming batch whose fold-state transaction fails (a real embedded Feast store behind the
pipeline step)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

import features.state as state_module
from features.archive import PurchaseArchive
from features.backfill import backfill
from features.pipeline import FeaturePipeline
from features.state import FoldStateStore
from tests.conftest import EventFactory
from tests.features.orders import START, backfilled_home
from xsell.history import LINE_COLUMNS, read_purchase_history
from xsell.settings import Settings


@pytest.fixture
def backfilled(tmp_path: Path) -> tuple[Settings, pd.DataFrame]:
    return backfilled_home(tmp_path)


def test_backfill_archives_the_history_lines_once_in_canonical_shape(backfilled: tuple[Settings, pd.DataFrame]) -> None:
    settings, _ = backfilled
    history = read_purchase_history(settings.home / "orders.csv").lines
    kept = PurchaseArchive(settings.db_url).lines()
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
    backfill(settings, settings.home / "orders.csv")  # a second backfill of the same history adds none
    assert PurchaseArchive(settings.db_url).span()[2] == len(history)


def test_a_batch_whose_transaction_failed_counts_in_full_when_it_is_retried(
    backfilled: tuple[Settings, pd.DataFrame], make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = backfilled
    state = FoldStateStore(settings.fold_state_db_url)
    before = state.load().customers["C1"].order_count
    later = START + timedelta(days=60)
    batch = [make_event(customer_id="C1", occurred_at=later + timedelta(minutes=n)) for n in range(3)]
    pipeline = FeaturePipeline(settings)

    def store_unreachable(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:  # the transaction fails after the fold took the batch in
        patch.setattr(state_module, "_insert", store_unreachable)
        with pytest.raises(sqlite3.OperationalError):
            pipeline.apply(batch)
    pipeline.apply(batch)  # the consumer loop retries a batch that failed on the store

    fold = state.load()
    assert fold.customers["C1"].order_count == before + 3
    assert {e.event_id for e in batch} <= fold.applied
    assert pipeline.stats.events_applied == 3
