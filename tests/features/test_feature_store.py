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


def test_a_frame_read_holds_the_same_values_as_row_reads(backfilled: tuple[Settings, pd.DataFrame]) -> None:
    settings, orders = backfilled
    reader = OnlineFeatureReader(FeaturePipeline(settings).store)
    ids = [*sorted(orders["customer_id"].unique()), "nobody"]
    frame = reader.frame("customer_stats_fv", ids)
    assert frame.index.tolist() == ids
    for row in reader.customers(ids):
        for name in reader.names["customer_stats_fv"]:
            value = frame.loc[row["customer_id"], name]
            assert value == row[name] or (row[name] is None and pd.isna(value))
    assert frame.loc["nobody"].isna().all()
    assert reader.frame("customer_stats_fv", []).columns.tolist() == reader.names["customer_stats_fv"]


def test_a_frame_read_takes_repeated_and_empty_ids_and_labels_its_rows(
    backfilled: tuple[Settings, pd.DataFrame],
) -> None:
    settings, orders = backfilled
    reader = OnlineFeatureReader(FeaturePipeline(settings).store)
    known = sorted(orders["customer_id"].unique())[:2]
    ids = [known[0], "", known[1], known[0]]  # "" is an anonymous customer: not read, no values
    frame = reader.frame("customer_stats_fv", ids, index=["t1", "t2", "t3", "t4"])
    assert frame.index.tolist() == ["t1", "t2", "t3", "t4"]
    assert frame["order_count"].dtype.kind == "f"  # numbers come as floats, ready for scoring
    single = reader.frame("customer_stats_fv", known)
    pd.testing.assert_frame_equal(frame.loc[["t1", "t4"]].set_axis([known[0]] * 2), single.loc[[known[0]] * 2])
    pd.testing.assert_series_equal(frame.loc["t3"], single.loc[known[1]], check_names=False)
    assert frame.loc["t2"].isna().all()
    assert reader.frame("customer_stats_fv", ["", ""]).isna().all().all()


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
