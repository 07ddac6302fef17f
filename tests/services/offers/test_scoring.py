"""The offer service's product feature cache on a real (embedded) Feast store: values as the
online store has them, one read per product, re-reads only for invalidated or expired rows; and
the bundles proposed beside the ranking."""

from __future__ import annotations

import time

import numpy as np
import pytest

from features.online import OnlineFeatureReader
from features.store import open_feature_store
from models.bundles import BundlePicker
from services.offers.rules import RankedCandidate
from services.offers.scoring import ProductFeatureCache, _kept_rows, propose_bundles
from tests.conftest import EventFactory
from tests.features.orders import backfilled_home
from tests.models.test_bundles import constructed_index
from xsell.events import LineItem
from xsell.offers import OfferType


class CountingReader(OnlineFeatureReader):
    """The real reader, counting the product ids it reads."""

    def __init__(self, store: object) -> None:
        super().__init__(store)
        self.reads: list[list[str]] = []

    def products(self, product_ids: list[str]) -> list[dict[str, object]]:
        self.reads.append(list(product_ids))
        return super().products(product_ids)


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> CountingReader:
    settings, _ = backfilled_home(tmp_path_factory.mktemp("cache-home"))
    return CountingReader(open_feature_store(settings))


def test_cached_values_are_the_online_values(reader: CountingReader) -> None:
    cache = ProductFeatureCache(reader)
    columns = cache.columns(["12", "11", "12", "NOPE"])
    assert list(columns) == reader.names["product_stats_fv"]
    online = {row["product_id"]: row for row in OnlineFeatureReader(reader.store).products(["11", "12"])}
    for at, product in enumerate(("12", "11", "12")):
        for column in ("current_price", "total_orders", "popularity_30d", "last_sold_ts"):
            assert columns[column][at] == pytest.approx(float(online[product][column]))
    assert all(np.isnan(values[3]) for values in columns.values())  # unknown product: all missing


def test_one_read_per_product_until_invalidated_or_expired(reader: CountingReader) -> None:
    cache = ProductFeatureCache(reader, ttl_s=0.5, refresh_s=0.2)
    reader.reads.clear()
    cache.columns(["11", "12"])
    cache.columns(["12", "13"])
    assert reader.reads == [["11", "12"], ["13"]]
    cache.invalidate(["11"])
    cache.columns(["11"])
    assert len(reader.reads) == 2  # invalidated, but its row is younger than refresh_s
    time.sleep(0.25)
    cache.columns(["11", "12"])
    assert reader.reads[-1] == ["11"]  # only the invalidated one is re-read
    time.sleep(0.5)
    cache.columns(["11", "12", "13"])
    assert sorted(reader.reads[-1]) == ["11", "12", "13"]  # all expired


def test_bundles_come_from_each_events_basket_and_its_ranked_complements(make_event: EventFactory) -> None:
    def bought(product_id: str):
        return make_event(lines=(LineItem(product_id=product_id, quantity=1, unit_price=20.0),))

    def cross_sell(product_id: str, reason: str = "Often bought with ITEM T") -> RankedCandidate:
        return RankedCandidate(product_id, OfferType.CROSS_SELL, 0.5, reason)

    # D goes with T, C and S (tests.models.test_bundles), but an up-sell or another design is no complement
    upgrade = RankedCandidate("D", OfferType.UP_SELL, 0.9, "Larger: ITEM D instead of ITEM T")
    teapot, teapot_again, bestseller = bought("T"), bought("T"), bought("B")
    ranked = {
        teapot.event_id: [upgrade, cross_sell("C"), cross_sell("S")],
        teapot_again.event_id: [cross_sell("D", "More designs like ITEM T"), cross_sell("C"), cross_sell("S")],
        bestseller.event_id: [cross_sell("C"), cross_sell("S")],
    }
    picker = BundlePicker(constructed_index())
    bundles = propose_bundles(picker, [teapot, teapot_again, bestseller], ranked, max_items=3)
    assert {event_id: bundle.parts for event_id, bundle in bundles.items()} == {
        teapot.event_id: ("C", "S"),
        teapot_again.event_id: ("C", "S"),
    }
    with_the_dish = {teapot.event_id: [cross_sell("D"), cross_sell("C"), cross_sell("S")]}
    assert propose_bundles(picker, [teapot], with_the_dish, max_items=3)[teapot.event_id].parts == ("D", "C", "S")


def test_each_triggers_best_up_sell_and_best_complement_are_kept_wherever_they_rank() -> None:
    triggers = np.asarray(["b", "a", "a", "a", "b", "a", "b", "a", "a"])
    scores = np.asarray([0.9, 0.8, 0.7, 0.6, 0.5, 0.1, 0.05, 0.04, 0.03])
    types = np.asarray(
        ["cross_sell", "cross_sell", "up_sell", "cross_sell", "cross_sell", "up_sell", "up_sell"] + ["cross_sell"] * 2
    )
    reasons = np.asarray(["Often bought with X"] * 7 + ["Goes well with X", "Goes well with Y"])
    kept = _kept_rows(triggers, scores, types, reasons, keep=1)
    # a: its best row (0.8), its best up-sell (0.7), its best complement (0.04); b: its best row
    # (0.9) and its only up-sell (0.05), no complement
    assert kept.tolist() == [1, 2, 7, 0, 6]
    assert _kept_rows(triggers, scores, types, reasons, keep=10).tolist() == [
        1,
        2,
        3,
        5,
        7,
        8,
        0,
        4,
        6,
    ]  # all of them, once
