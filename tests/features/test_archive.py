"""The purchase archive on a real SQLite database: each line once, canonical lines back, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.archive import PurchaseArchive
from tests.conftest import EventFactory
from tests.features.orders import START, write_orders
from xsell.events import EventType, LineItem
from xsell.history import LINE_COLUMNS, events_from_history, read_purchase_history


@pytest.fixture
def archive(tmp_path: Path) -> PurchaseArchive:
    return PurchaseArchive(f"sqlite:///{tmp_path / 'xsell.db'}")


@pytest.fixture
def history(tmp_path: Path) -> pd.DataFrame:
    write_orders(tmp_path / "orders.csv")
    return read_purchase_history(tmp_path / "orders.csv").lines


def test_an_imported_history_replayed_as_events_lands_once(archive: PurchaseArchive, history: pd.DataFrame) -> None:
    assert archive.add_lines(history) == len(history)
    assert archive.add_events(events_from_history(history)) == 0
    assert archive.add_lines(history) == 0
    assert archive.span()[2] == len(history)


def test_lines_come_back_canonical_and_equal(archive: PurchaseArchive, history: pd.DataFrame) -> None:
    archive.add_events(events_from_history(history))
    kept = archive.lines()
    assert list(kept.columns) == list(LINE_COLUMNS)
    assert kept["ordered_at"].is_monotonic_increasing
    columns = ["order_id", "customer_id", "product_id", "product_name", "quantity", "unit_price", "ordered_at"]
    expected = history.sort_values(["ordered_at", "order_id"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(kept[columns].astype(object), expected[columns].astype(object))


@pytest.mark.parametrize("unit", ["ns", "us", "ms"])
def test_line_times_are_exact_whatever_the_frame_resolution(
    archive: PurchaseArchive, history: pd.DataFrame, unit: str
) -> None:
    frame = history.assign(ordered_at=history["ordered_at"].dt.as_unit(unit))
    archive.add_lines(frame)
    assert archive.lines()["ordered_at"].min() == history["ordered_at"].min()
    oldest, newest, _ = archive.span()
    assert (oldest, newest) == (history["ordered_at"].min(), history["ordered_at"].max())


def test_a_window_is_since_inclusive_until_exclusive(archive: PurchaseArchive, make_event: EventFactory) -> None:
    times = [START + timedelta(days=day) for day in range(5)]
    archive.add_events([make_event(occurred_at=at) for at in times])
    window = archive.lines(since=times[1], until=times[3])
    assert window["ordered_at"].tolist() == [pd.Timestamp(times[1]), pd.Timestamp(times[2])]


def test_cancellations_are_archived_as_returns(archive: PurchaseArchive, make_event: EventFactory) -> None:
    archive.add_events(
        [
            make_event(order_id="A1"),
            make_event(
                order_id="A1",
                event_type=EventType.ORDER_CANCELLED,
                lines=(LineItem(product_id="P1", name="MUG", quantity=1, unit_price=3.5),),
            ),
        ]
    )
    kept = archive.lines()
    assert kept["is_return"].tolist() == [False, True]
    assert (kept["quantity"] > 0).all()


def test_an_empty_archive_has_no_span_and_no_lines(archive: PurchaseArchive) -> None:
    assert archive.span() == (None, None, 0)
    assert archive.lines().empty
    assert archive.lines(since=datetime(2011, 1, 1, tzinfo=UTC)).columns.tolist() == list(LINE_COLUMNS)
