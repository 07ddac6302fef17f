"""Both purchase-history readers, the layout detection and the cancellation policy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from xsell.events import EventType
from xsell.history import (
    UnknownLayoutError,
    count_events,
    detect_layout,
    events_from_history,
    read_purchase_history,
)
from xsell.settings import REPO_ROOT

UCI_ROWS = [
    # InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country
    ("536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26:00", 2.55, 17850.0, "UK"),
    ("536365", "71053", "WHITE METAL LANTERN", 6, "2010-12-01 08:26:00", 3.39, 17850.0, "UK"),
    ("C536379", "D", "Discount", -1, "2010-12-01 09:41:00", 27.5, 14527.0, "UK"),
    ("536414", "22139", None, 56, "2010-12-01 11:52:00", 0.0, None, "UK"),
    ("536544", "21773", "DECORATIVE ROSE BATHROOM BOTTLE", 1, "2010-12-01 14:32:00", 2.51, None, "UK"),
]


@pytest.fixture
def uci_file(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        UCI_ROWS,
        columns=[
            "InvoiceNo",
            "StockCode",
            "Description",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
            "CustomerID",
            "Country",
        ],
    )
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"])
    path = tmp_path / "uci.parquet"
    frame.to_parquet(path)
    return path


@pytest.fixture
def canonical_file(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,product_id,quantity,unit_price,ordered_at,product_name,category,currency\n"
        "o1,c1,p1,2,1.50,2024-03-01T10:00:00Z,Mug,kitchen,EUR\n"
        "o1,c1,p2,1,9.99,2024-03-01T10:00:00Z,Teapot,kitchen,EUR\n"
        "o2,,p1,1,1.50,2024-03-02T10:00:00+01:00,Mug,kitchen,EUR\n"
        "o3,c1,p2,-1,9.99,2024-03-05T10:00:00Z,Teapot,kitchen,EUR\n"
        "o4,c2,p3,one,2.00,2024-03-06T10:00:00Z,Spoon,kitchen,EUR\n"
        "o5,c2,p3,1,2.00,not-a-date,Spoon,kitchen,EUR\n"
    )
    return path


def test_detects_both_layouts_and_names_missing_columns() -> None:
    assert (
        detect_layout(["order_id", "customer_id", "product_id", "quantity", "unit_price", "ordered_at"]) == "canonical"
    )
    assert (
        detect_layout(["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"])
        == "uci"
    )
    with pytest.raises(UnknownLayoutError, match=r"missing canonical columns \['quantity', 'unit_price'\]"):
        detect_layout(["order_id", "customer_id", "product_id", "ordered_at"])


def test_unsupported_file_type_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(UnknownLayoutError, match="unsupported file type"):
        read_purchase_history(tmp_path / "x.xlsx")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_purchase_history(tmp_path / "missing.csv")


def test_uci_reader_maps_columns_and_counts_rejected_rows(uci_file: Path) -> None:
    history = read_purchase_history(uci_file)
    assert history.layout == "uci"
    assert history.rejected == {"non_positive_price": 1}
    assert history.source_rows == len(UCI_ROWS)
    first = history.lines.iloc[0]
    assert (first["order_id"], first["customer_id"], first["product_id"]) == ("536365", "17850", "85123A")
    assert first["currency"] == "GBP"
    assert str(first["ordered_at"].tz) == "UTC"


def test_uci_cancellations_become_order_cancelled_events_with_positive_quantities(uci_file: Path) -> None:
    events = list(events_from_history(read_purchase_history(uci_file).lines))
    by_order = {e.order_id: e for e in events}
    assert by_order["536365"].event_type is EventType.PURCHASE
    assert len(by_order["536365"].lines) == 2
    cancelled = by_order["C536379"]
    assert cancelled.event_type is EventType.ORDER_CANCELLED
    assert cancelled.lines[0].quantity == 1
    assert by_order["536544"].customer_id is None


def test_canonical_reader_rejects_broken_rows_and_splits_returns(canonical_file: Path) -> None:
    history = read_purchase_history(canonical_file)
    assert history.layout == "canonical"
    assert history.rejected == {"bad_quantity": 1, "bad_timestamp": 1}
    events = list(events_from_history(history.lines))
    assert [(e.order_id, e.event_type) for e in events] == [
        ("o1", EventType.PURCHASE),
        ("o2", EventType.PURCHASE),
        ("o3", EventType.ORDER_CANCELLED),
    ]
    assert events[0].currency == "EUR"
    assert events[0].lines[0].category == "kitchen"
    assert events[1].customer_id is None
    assert events[1].occurred_at.hour == 9  # +01:00 normalized to UTC
    assert count_events(history.lines) == 3


def test_events_are_in_time_order_and_ids_stable(canonical_file: Path) -> None:
    first = [e.event_id for e in events_from_history(read_purchase_history(canonical_file).lines)]
    again = [e.event_id for e in events_from_history(read_purchase_history(canonical_file).lines)]
    assert first == again
    times = [e.occurred_at for e in events_from_history(read_purchase_history(canonical_file).lines)]
    assert times == sorted(times)


def test_shipped_sample_is_readable_and_whole_year() -> None:
    history = read_purchase_history(REPO_ROOT / "data" / "online_retail_sample.parquet")
    assert history.layout == "uci"
    lines = history.lines
    assert 2_000 <= lines["order_id"].nunique() <= 10_000
    assert lines["ordered_at"].min() < pd.Timestamp("2011-01-01", tz="UTC")
    assert lines["ordered_at"].max() > pd.Timestamp("2011-12-01", tz="UTC")
    assert lines["customer_id"].isna().any()  # anonymous orders are part of the sample
    assert lines["is_return"].any()  # and so are cancellations


def test_rows_the_event_contract_refuses_are_counted_not_replayed(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(
        "order_id,customer_id,product_id,quantity,unit_price,ordered_at,currency,customer_email,channel\n"
        f"o1,c1,{'P' * 80},1,1.0,2024-03-01T10:00:00Z,EUR,,web\n"
        "o2,c1,p2,1,1.0,2024-03-01T10:00:00Z,euro,,web\n"
        "o3,c1,p3,1,1.0,2024-03-01T10:00:00Z,EUR,not-an-address,web\n"
        f"o4,c1,p4,1,1.0,2024-03-01T10:00:00Z,EUR,,{'x' * 40}\n"
        "o5,c1,p5,1,1.0,2024-03-01T10:00:00Z,EUR,c1@example.com,web\n"
    )
    history = read_purchase_history(path)
    assert history.rejected == {"id_too_long": 1, "bad_currency": 1, "bad_email": 1, "bad_channel": 1}
    assert [e.order_id for e in events_from_history(history.lines)] == ["o5"]


def test_an_order_with_lines_a_minute_apart_is_one_event(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text(
        "order_id,customer_id,product_id,quantity,unit_price,ordered_at\n"
        "o1,c1,p1,1,1.0,2024-03-01T10:00:00Z\n"
        "o2,c2,p1,1,1.0,2024-03-01T10:00:30Z\n"
        "o1,c1,p2,1,2.0,2024-03-01T10:01:00Z\n"
    )
    history = read_purchase_history(path)
    events = list(events_from_history(history.lines))
    assert [e.order_id for e in events] == ["o1", "o2"]  # one event per order, in time order
    assert [line.product_id for line in events[0].lines] == ["p1", "p2"]
    assert events[0].occurred_at.isoformat() == "2024-03-01T10:00:00+00:00"
    assert len({e.event_id for e in events}) == 2 == count_events(history.lines)
