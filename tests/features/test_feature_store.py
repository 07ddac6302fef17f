"""The Feast walk-through on a real (embedded) store: backfill, point-in-time retrieval without
leakage, materialize, online read, push through the pipeline step, read again."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from features.historical import historical_features
from features.online import OnlineFeatureReader, customer_online_features, product_online_features
from features.pipeline import FeaturePipeline
from tests.conftest import EventFactory
from tests.features.orders import START, backfilled_home
from xsell.events import LineItem
from xsell.settings import Settings


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    return backfilled_home(tmp_path_factory.mktemp("feature-home"))


def test_no_historical_value_sees_an_order_at_or_after_its_time(backfilled: tuple[Settings, pd.DataFrame]) -> None:
    settings, orders = backfilled
    order_times = orders.drop_duplicates("order_id").assign(at=lambda f: pd.to_datetime(f["ordered_at"], utc=True))
    probes = []
    for customer, group in order_times.groupby("customer_id"):
        for at in group["at"]:
            probes += [(customer, at), (customer, at + pd.Timedelta(seconds=1)), (customer, at - pd.Timedelta(hours=3))]
    entity_rows = pd.DataFrame(probes, columns=["customer_id", "event_timestamp"])
    values = historical_features(settings, entity_rows, "customer_stats_fv")
    assert len(values) == len(entity_rows)
    for (customer, at), seen in zip(probes, values["order_count"].fillna(0), strict=True):
        mine = order_times[order_times["customer_id"] == customer]["at"]
        strictly_before = int((mine < at).sum())
        days_before = int((mine < at.normalize()).sum())
        assert seen <= strictly_before, f"{customer} at {at}: sees {seen} orders, only {strictly_before} before"
        assert seen >= days_before, f"{customer} at {at}: stale by more than a day"


def test_online_store_holds_the_latest_values_after_backfill(backfilled: tuple[Settings, pd.DataFrame]) -> None:
    settings, orders = backfilled
    pipeline = FeaturePipeline(settings)
    expected = orders.drop_duplicates("order_id")["customer_id"].value_counts()
    rows = customer_online_features(pipeline.store, list(expected.index))
    assert {r["customer_id"]: r["order_count"] for r in rows} == expected.to_dict()
    products = product_online_features(pipeline.store, ["11", "12", "nope"])
    assert products[0]["total_orders"] == int((orders["product_id"] == "11").sum())
    assert products[0]["category"] == "TEST MUG"  # derived product type shared by the five products
    assert products[2]["total_orders"] is None  # unknown product: no values, no error


def test_a_column_read_holds_the_same_values_as_row_reads(backfilled: tuple[Settings, pd.DataFrame]) -> None:
    settings, orders = backfilled
    reader = OnlineFeatureReader(FeaturePipeline(settings).store)
    ids = [*sorted(orders["customer_id"].unique()), "nobody"]
    columns = reader.columns("customer_stats_fv", ids)
    assert list(columns) == reader.names["customer_stats_fv"]
    for at, row in enumerate(reader.customers(ids)):
        for name in reader.names["customer_stats_fv"]:
            value = columns[name][at]
            assert value == row[name] or (row[name] is None and pd.isna(value))
    assert all(pd.isna(values[-1]) for values in columns.values())  # "nobody": all missing
    empty = reader.columns("customer_stats_fv", [])
    assert list(empty) == reader.names["customer_stats_fv"] and all(len(v) == 0 for v in empty.values())


def test_a_column_read_takes_repeated_and_empty_ids(backfilled: tuple[Settings, pd.DataFrame]) -> None:
    settings, orders = backfilled
    reader = OnlineFeatureReader(FeaturePipeline(settings).store)
    known = sorted(orders["customer_id"].unique())[:2]
    ids = [known[0], "", known[1], known[0]]  # "" is an anonymous customer: not read, no values
    columns = reader.columns("customer_stats_fv", ids)
    assert columns["order_count"].dtype.kind == "f"  # numbers come as floats, ready for scoring
    single = reader.columns("customer_stats_fv", known)
    for name, values in columns.items():
        assert len(values) == 4
        for got, expected in zip(values[[0, 3, 2]], single[name][[0, 0, 1]], strict=True):
            assert got == expected or (pd.isna(got) and pd.isna(expected))
        assert pd.isna(values[1])
    assert all(pd.isna(v).all() for v in reader.columns("customer_stats_fv", ["", ""]).values())


def test_push_updates_online_and_offline_and_a_repeat_changes_nothing(
    backfilled: tuple[Settings, pd.DataFrame], make_event: EventFactory
) -> None:
    settings, _ = backfilled
    settings = settings.model_copy(update={"feast_push_offline": True})  # off by default: this test checks it
    pipeline = FeaturePipeline(settings)
    before = customer_online_features(pipeline.store, ["C1"])[0]["order_count"]
    offline_rows = len(pd.read_parquet(settings.feast_dir / "data" / "customer_stats.parquet"))
    event = make_event(
        customer_id="C1",
        occurred_at=START + timedelta(days=60),
        lines=(LineItem(product_id="11", quantity=1, unit_price=2.5),),
    )
    pipeline.apply([event])
    assert customer_online_features(pipeline.store, ["C1"])[0]["order_count"] == before + 1
    assert len(pd.read_parquet(settings.feast_dir / "data" / "customer_stats.parquet")) > offline_rows
    pipeline.apply([event])  # re-delivered
    assert customer_online_features(pipeline.store, ["C1"])[0]["order_count"] == before + 1
    restarted = FeaturePipeline(settings)  # state survives a restart
    restarted.apply([event])
    assert customer_online_features(restarted.store, ["C1"])[0]["order_count"] == before + 1
