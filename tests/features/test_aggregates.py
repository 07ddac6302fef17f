"""The one fold behind every feature: values, idempotency, order independence, returns."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from features.aggregates import SNAPSHOT_DELAY, FeatureFold
from features.state import FoldStateStore
from tests.conftest import EventFactory
from xsell.events import EventType, LineItem

T0 = datetime(2011, 3, 1, tzinfo=UTC)


def _line(product: str, quantity: int = 1, price: float = 2.0, category: str | None = None) -> LineItem:
    return LineItem(product_id=product, name=f"ITEM {product}", quantity=quantity, unit_price=price, category=category)


def _history(make_event: EventFactory) -> list:
    return [
        make_event(customer_id="A", occurred_at=T0, lines=(_line("P1", 2, 2.0, "MUG"), _line("P2", 1, 10.0, "BAG"))),
        make_event(customer_id="B", occurred_at=T0 + timedelta(days=1), lines=(_line("P1", 1, 3.0, "MUG"),)),
        make_event(customer_id="A", occurred_at=T0 + timedelta(days=10), lines=(_line("P3", 4, 1.0, "MUG"),)),
        make_event(
            customer_id="A",
            occurred_at=T0 + timedelta(days=11),
            event_type=EventType.ORDER_CANCELLED,
            lines=(_line("P3", 2, 1.0, "MUG"),),
        ),
        make_event(customer_id=None, occurred_at=T0 + timedelta(days=40), lines=(_line("P1", 1, 3.0, "MUG"),)),
    ]


def test_customer_features(make_event: EventFactory) -> None:
    fold = FeatureFold()
    fold.apply(_history(make_event))
    a = fold.customers["A"].features()
    assert a["order_count"] == 2
    assert a["lifetime_spend"] == pytest.approx(2 * 2.0 + 10.0 + 4 * 1.0)
    assert a["avg_order_value"] == pytest.approx(18.0 / 2)
    assert a["distinct_products"] == 3
    assert a["avg_unit_price"] == pytest.approx(18.0 / 7, abs=1e-4)
    assert a["return_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert a["returned_units_rate"] == pytest.approx(2 / 7, abs=1e-4)
    assert a["last_order_ts"] == (T0 + timedelta(days=10)).timestamp()
    assert a["top_categories"] == "BAG|MUG"
    assert json.loads(a["category_affinity"]) == pytest.approx({"BAG": 10 / 18, "MUG": 8 / 18}, abs=1e-4)


def test_product_features(make_event: EventFactory) -> None:
    fold = FeatureFold()
    fold.apply(_history(make_event))
    p1 = fold.products["P1"].features(price_percentile=fold.percentiles()["P1"])
    assert p1["total_orders"] == 3  # anonymous orders count for products
    assert p1["distinct_buyers"] == 2
    assert p1["current_price"] == 3.0
    assert p1["median_price"] == 3.0
    assert p1["popularity_7d"] == 1 and p1["popularity_90d"] == 3
    assert fold.products["P3"].features(0.5)["return_rate"] == pytest.approx(0.5)
    # MUG category: medians P1=3.0, P3=1.0 -> P3 lowest, P1 highest
    assert fold.percentiles()["P3"] < fold.percentiles()["P1"]


def test_applying_an_event_twice_changes_nothing(make_event: EventFactory) -> None:
    events = _history(make_event)
    fold = FeatureFold()
    fold.apply(events)
    before = {c: s.features() for c, s in fold.customers.items()}
    out = fold.apply(events[:2])
    assert out.skipped_duplicates == 2 and out.applied == []
    assert {c: s.features() for c, s in fold.customers.items()} == before


def test_result_does_not_depend_on_arrival_order_across_customers(make_event: EventFactory) -> None:
    events = _history(make_event)
    ordered, shuffled = FeatureFold(), FeatureFold()
    ordered.apply(events)
    mixed = events[:]
    random.Random(7).shuffle(mixed)
    for event in mixed:
        shuffled.apply([event], snapshot_every_event=False)
    for product in ordered.products:
        assert ordered.products[product].features(0) == shuffled.products[product].features(0)
    assert ordered.percentiles() == shuffled.percentiles()


def test_snapshots_are_stamped_just_after_their_event(make_event: EventFactory) -> None:
    events = _history(make_event)
    out = FeatureFold().apply(events)
    assert out.customer_rows[0]["event_timestamp"] == events[0].occurred_at + SNAPSHOT_DELAY
    assert all(row["event_timestamp"] > T0 for row in out.product_rows)


def test_one_product_snapshot_per_timestamp_even_when_its_percentile_moves(make_event: EventFactory) -> None:
    fold = FeatureFold()
    out = fold.apply(
        [
            make_event(customer_id="A", occurred_at=T0, lines=(_line("P1", 1, 2.0, "MUG"),)),
            # the last sale of the batch moves P1's and P2's price percentiles in MUG
            make_event(customer_id="B", occurred_at=T0 + timedelta(days=1), lines=(_line("P2", 1, 9.0, "MUG"),)),
        ]
    )
    keys = [(row["product_id"], row["event_timestamp"]) for row in out.product_rows]
    assert len(keys) == len(set(keys))
    last_p2 = [row for row in out.product_rows if row["product_id"] == "P2"][-1]
    assert last_p2["price_percentile"] == pytest.approx(fold.percentiles()["P2"])


def test_owned_products_respect_the_time_they_were_first_bought(make_event: EventFactory, tmp_path) -> None:

    fold = FeatureFold()
    fold.apply(_history(make_event))
    store = FoldStateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.replace_all(fold)
    owned = store.owned_products(["A"], as_of={"A": T0 + timedelta(days=5)})
    assert set(owned["A"]) == {"P1", "P2"}  # P3 is bought on day 10: not owned yet on day 5
    assert set(store.owned_products(["A"])["A"]) == {"P1", "P2", "P3"}


def test_owned_products_come_most_recent_first_like_training_history(make_event: EventFactory, tmp_path) -> None:

    fold = FeatureFold()
    fold.apply(
        [
            make_event(customer_id="A", occurred_at=T0, lines=(_line("P1", 1, 2.0, "MUG"), _line("P2", 1, 2.0, "MUG"))),
            make_event(customer_id="A", occurred_at=T0 + timedelta(days=3), lines=(_line("P3", 1, 2.0, "MUG"),)),
            make_event(customer_id="A", occurred_at=T0 + timedelta(days=6), lines=(_line("P1", 1, 2.0, "MUG"),)),
            make_event(customer_id="A", occurred_at=T0 + timedelta(days=20), lines=(_line("P3", 1, 2.0, "MUG"),)),
        ]
    )
    store = FoldStateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.replace_all(fold)
    assert store.owned_products(["A"])["A"] == ("P3", "P1", "P2")
    # as of day 10 the day-20 purchase of P3 is in the future: P3 falls back to its first purchase
    assert store.owned_products(["A"], as_of={"A": T0 + timedelta(days=10)})["A"] == ("P1", "P3", "P2")
