"""Evaluation shape and per-type metrics on a constructed case; baselines honour the exclusions."""

from __future__ import annotations

import pandas as pd
import pytest

from models.index import CandidateIndex
from tests.models.retail import START, store_history
from training.baselines import BASELINES, RECOMMENDATION_COLUMNS, recommend, recommend_all
from training.evaluation import evaluate, render_markdown


@pytest.fixture(scope="module")
def index() -> CandidateIndex:
    return CandidateIndex.build(store_history(), START + pd.Timedelta(days=40))


def triggers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trigger_id": ["t1", "t2"],
            "customer_id": ["K1", "K2"],
            "at": [START + pd.Timedelta(days=41)] * 2,
            "basket": [("L1",), ("M1",)],
            "history": [("C1",), ()],
            "returned": [(), ()],
            "truth": [("L2", "C2"), ("C2",)],
        }
    )


def test_evaluate_by_hand(index: CandidateIndex) -> None:
    recs = pd.DataFrame(
        {
            "model": ["m"] * 4,
            "trigger_id": ["t1", "t1", "t2", "t2"],
            "product_id": ["C2", "L2", "L3", "C3"],
            "rank": [1, 2, 1, 2],
            "offer_type": ["cross_sell", "up_sell", "cross_sell", "cross_sell"],
        }
    )
    result = evaluate(recs, triggers(), index, k=10)
    assert result["k"] == 10 and result["triggers"] == 2
    assert result["truth_items"] == {"cross_sell": 2, "up_sell": 1}  # L2 upgrades t1's L1
    overall = result["models"]["m"]["overall"]
    assert overall["hit_rate"] == pytest.approx(0.5)
    assert overall["ndcg"] == pytest.approx(0.5)  # t1 perfect, t2 nothing
    assert overall["coverage"] == pytest.approx(4 / index.size)
    up = result["models"]["m"]["up_sell"]  # only t1 has up-sell truth; its up-sell list is [L2]
    assert up["triggers"] == 1 and up["ndcg"] == pytest.approx(1.0) and up["mrr"] == pytest.approx(1.0)
    cross = result["models"]["m"]["cross_sell"]  # t1: [C2] vs {C2}; t2: [L3, C3] vs {C2}
    assert cross["triggers"] == 2 and cross["hit_rate"] == pytest.approx(0.5)
    report = render_markdown(result)
    assert "| m |" in report and "## up_sell" in report


def test_baselines_respect_exclusions_and_k(index: CandidateIndex) -> None:
    recs = recommend_all(index, triggers(), k=3)
    assert list(recs.columns) == list(RECOMMENDATION_COLUMNS)
    assert set(recs["model"]) == set(BASELINES)
    assert recs.groupby(["model", "trigger_id"]).size().max() <= 3
    t1 = recs[recs["trigger_id"] == "t1"]
    assert not set(t1["product_id"]) & {"L1", "C1", "POST"}
    upsell = recommend(index, triggers(), "upsell_price_band", k=3)
    first = upsell[upsell["trigger_id"] == "t1"].iloc[0]
    assert first["product_id"] == "L2" and first["offer_type"] == "up_sell"
    with pytest.raises(ValueError, match="unknown baseline"):
        recommend(index, triggers(), "oracle")
