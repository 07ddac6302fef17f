"""The streaming feature pipeline against the real broker and a real (embedded) Feast store."""

from __future__ import annotations

import math
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from features.backfill import backfill
from features.catalog import build_catalog, category_map
from features.online import customer_online_features, product_online_features
from features.pipeline import FeaturePipeline
from features.state import FoldStateStore
from features.store import apply_definitions
from services.ingest.replay import produce_events, replay_file
from tests.conftest import EventFactory
from tests.features.orders import START, write_orders
from xsell.events import LineItem
from xsell.history import read_purchase_history
from xsell.settings import Settings


def _own_home(settings: Settings, home: Path, **changes: object) -> Settings:
    return settings.model_copy(update={"home": home, "features_group": f"features-{home.name}", **changes})


def _prepare_streaming_home(settings: Settings, orders_file: Path) -> None:
    """A store with definitions and the product catalog (reference data), but no aggregates."""
    catalog = build_catalog(read_purchase_history(orders_file).lines)
    FoldStateStore(settings.fold_state_db_url).save_categories(category_map(catalog))
    apply_definitions(settings)


def _online_values(settings: Settings, customers: list[str], products: list[str]) -> dict[str, dict]:
    store = FeaturePipeline(settings).store
    rows = customer_online_features(store, customers) + product_online_features(store, products)
    return {str(r.get("customer_id", r.get("product_id"))): r for r in rows}


def _assert_same(left: dict[str, dict], right: dict[str, dict]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        for name, value in left[key].items():
            other = right[key][name]
            if isinstance(value, float) and isinstance(other, float):
                assert math.isclose(value, other, rel_tol=1e-6, abs_tol=1e-6), (key, name, value, other)
            else:
                assert value == other, (key, name, value, other)


def test_an_event_reaches_the_online_store_within_seconds(
    kafka_settings: Settings, tmp_path: Path, make_event: EventFactory
) -> None:
    settings = _own_home(kafka_settings, tmp_path)
    write_orders(tmp_path / "orders.csv")
    backfill(settings, tmp_path / "orders.csv")
    pipeline = FeaturePipeline(settings)
    before = customer_online_features(pipeline.store, ["C2"])[0]["order_count"]
    worker = threading.Thread(target=pipeline.run, daemon=True)
    worker.start()
    try:
        time.sleep(2)  # let the group assignment happen; the test measures event-to-store time
        event = make_event(
            customer_id="C2",
            occurred_at=START + timedelta(days=90),
            lines=(LineItem(product_id="12", quantity=1, unit_price=2.5),),
        )
        sent = time.monotonic()
        produce_events(settings, iter([event]))
        while time.monotonic() - sent < 10:
            if customer_online_features(pipeline.store, ["C2"])[0]["order_count"] == before + 1:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - sent
        assert customer_online_features(pipeline.store, ["C2"])[0]["order_count"] == before + 1
        assert elapsed < 10
    finally:
        pipeline.stop()
        worker.join(30)


def test_streaming_equals_backfill(kafka_settings: Settings, tmp_path: Path) -> None:
    orders_file = tmp_path / "orders.csv"
    orders = write_orders(orders_file, seed=11, customers=8, orders=80)
    batch = _own_home(kafka_settings, tmp_path / "batch")
    backfill(batch, orders_file)

    streamed = _own_home(kafka_settings, tmp_path / "stream", poll_max_records=7)
    _prepare_streaming_home(streamed, orders_file)
    replay_file(streamed, orders_file)
    stats = FeaturePipeline(streamed, until_caught_up=True).run()
    assert stats.events_applied == orders["order_id"].nunique()

    customers = sorted(orders["customer_id"].unique())
    products = sorted(orders["product_id"].unique())
    _assert_same(_online_values(batch, customers, products), _online_values(streamed, customers, products))


class CrashAfterWrite(FeaturePipeline):
    """Dies after its second batch is written to the store, before offsets are committed."""

    batches = 0

    def handle(self, records: list) -> None:
        super().handle(records)
        CrashAfterWrite.batches += 1
        if CrashAfterWrite.batches == 2:
            raise RuntimeError("simulated crash between write and commit")


def test_crash_between_write_and_commit_does_not_double_count(kafka_settings: Settings, tmp_path: Path) -> None:
    orders_file = tmp_path / "orders.csv"
    orders = write_orders(orders_file, seed=5, customers=5, orders=50)
    reference = _own_home(kafka_settings, tmp_path / "reference")
    backfill(reference, orders_file)

    settings = _own_home(kafka_settings, tmp_path / "crashing", poll_max_records=5)
    _prepare_streaming_home(settings, orders_file)
    replay_file(settings, orders_file)
    with pytest.raises(RuntimeError, match="simulated crash"):
        CrashAfterWrite(settings).run()
    restarted = FeaturePipeline(settings, until_caught_up=True).run()
    assert restarted.duplicates >= 1  # the uncommitted batch came back and was recognised

    customers = sorted(orders["customer_id"].unique())
    products = sorted(orders["product_id"].unique())
    _assert_same(_online_values(reference, customers, products), _online_values(settings, customers, products))
    counts = orders.drop_duplicates("order_id")["customer_id"].value_counts().to_dict()
    assert {c: v["order_count"] for c, v in _online_values(settings, customers, []).items()} == counts
