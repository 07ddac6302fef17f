"""The backtest serves the period after its cutoff through the offer service's code, on the
shipped sample with real embedded Feast and MLflow stores (slow: about two minutes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cli.backtest import BacktestConfig, _backtest_settings, _batches, backtest, served_offers
from xsell.events import EventType, PurchaseEvent, event_id_for
from xsell.history import read_purchase_history
from xsell.offers import OfferDecision, OfferItem, OfferType
from xsell.settings import REPO_ROOT, Settings, load_settings

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"


def _event(order_id: str, at: datetime) -> PurchaseEvent:
    return PurchaseEvent.model_validate(
        {
            "event_id": event_id_for(order_id, EventType.PURCHASE),
            "event_type": EventType.PURCHASE,
            "order_id": order_id,
            "customer_id": "c1",
            "occurred_at": at,
            "lines": ({"product_id": "P1", "name": None, "quantity": 1, "unit_price": 1.0, "category": None},),
        }
    )


def test_batches_keep_event_order_and_never_span_two_days() -> None:
    start = datetime(2011, 1, 1, 22, tzinfo=UTC)
    events = [_event(str(n), start + timedelta(hours=n)) for n in range(6)]
    batches = _batches(events, size=2)
    assert [e for batch in batches for e in batch] == events
    assert all(len(b) <= 2 and len({e.occurred_at.date() for e in b}) == 1 for b in batches)
    assert [len(b) for b in batches] == [2, 2, 2]  # 22h, 23h | 0h, 1h | 2h, 3h


def test_served_offers_keep_the_service_ranking_of_trigger_orders_only() -> None:
    at = datetime(2011, 1, 1, tzinfo=UTC)
    items = tuple(
        OfferItem(
            offer_id=f"o{r}",
            product_id=f"P{r}",
            offer_type=OfferType.CROSS_SELL,
            rank=r,
            score=1.0 / r,
            reason="Often bought with X",
        )
        for r in (1, 2)
    )
    decisions = [
        OfferDecision(
            decision_id=f"d{n}",
            event_id=f"e{n}",
            order_id=f"O{n}",
            customer_id="c1",
            occurred_at=at,
            decided_at=at,
            model_version="1",
            offers=items,
        )
        for n in (1, 2)
    ]
    triggers = pd.DataFrame({"trigger_id": ["t1"], "customer_id": ["c1"], "order_id": ["O1"]})
    offers = served_offers(decisions, triggers)
    assert offers["trigger_id"].tolist() == ["t1", "t1"] and offers["product_id"].tolist() == ["P1", "P2"]
    assert offers["rank"].tolist() == [1, 2] and (offers["model"] == "served").all()


def test_backtest_refuses_a_trigger_period_of_no_days(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be larger than"):
        backtest(load_settings(home=tmp_path), SAMPLE, BacktestConfig(test_days=30, horizon_days=30))


def test_backtest_serves_and_scores_the_period_after_the_cutoff(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    result = backtest(settings, SAMPLE, BacktestConfig(test_days=40, horizon_days=20))
    lines = read_purchase_history(SAMPLE).lines
    cutoff = lines["ordered_at"].max() - pd.Timedelta(days=40)
    assert pd.Timestamp(result["cutoff"]) == cutoff
    # the served model knew everything before the cutoff and nothing after it
    assert pd.Timestamp(result["served_index_as_of"]) < cutoff
    assert cutoff - pd.Timestamp(result["served_index_as_of"]) < pd.Timedelta(days=3)
    assert result["index_refreshes"] >= 10  # daily, over a 20-day trigger period
    assert result["triggers"] > 30 and result["served"]["overall"]["triggers"] == result["triggers"]
    assert 0 < result["served"]["overall"]["ndcg"] <= 1 and 0 < result["served"]["overall"]["hit_rate"] <= 1
    assert {"popularity", "item_knn", "bought_together"} <= set(result["baselines"])
    coverage = result["coverage_of_orders"]
    assert coverage["purchases"] > result["triggers"] and coverage["with_offers"] == coverage["purchases"]
    assert "ndcg" in result["heldout_research"]["overall"]
    assert not (tmp_path / "home").exists()  # a scratch home of its own: the caller's stores are untouched


def test_a_list_of_k_offers_has_the_caps_of_the_messages_it_stands_for(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, max_offers_per_message=3, max_popular_offers=1, max_variant_offers=2)
    scored = _backtest_settings(settings, tmp_path / "scratch", k=10)
    assert scored.max_offers_per_message == 10
    assert (scored.max_popular_offers, scored.max_variant_offers) == (4, 8)  # ten offers: four messages
    assert _backtest_settings(settings, tmp_path / "scratch", k=3).max_variant_offers == 2
