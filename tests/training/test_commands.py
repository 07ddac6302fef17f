"""train -> register -> promote -> recommend on the shipped sample, with a real Feast store and a
real MLflow store under tmp_path (slower: about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.state import FoldStateStore
from models.champion import load_champion
from models.registry import champion_version, open_tracking
from training import commands
from training.recommend import OUTPUT_COLUMNS
from xsell.history import read_purchase_history
from xsell.settings import REPO_ROOT, load_settings

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"


def test_train_register_promote_recommend(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    summary = commands.train(settings, SAMPLE)
    json.dumps(summary)  # JSON-able
    assert summary["model_version"] == 1 and summary["champion"] is True
    assert summary["heldout"]["windows"] > 1 and summary["heldout"]["positives"] > 0
    assert summary["served"]["positives"] > 0
    assert set(summary["metrics"]) >= {"ranker", "popularity", "item_knn"}
    assert 0 < summary["metrics"]["ranker"]["overall"]["hit_rate"] <= 1

    client = open_tracking(settings)
    run = client.get_run(summary["run_id"])
    assert run.data.tags["data.sha256"] == summary["data"]["sha256"] and "ndcg_at_k" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert {
        "candidate_index",
        "evaluation",
        "feature_importance.png",
        "ranker_config.json",
        "heldout_model.txt",
    } <= artifacts

    # what serves is the refit on everything: its index knows the newest order
    newest = read_purchase_history(SAMPLE).lines["ordered_at"].max()
    served = load_champion(settings, tmp_path / "champion")
    assert served.index.as_of == newest + pd.Timedelta(microseconds=1)
    assert run.data.tags["served.index_as_of"] == served.index.as_of.isoformat()
    assert pd.Timestamp(run.data.tags["cutoff"]) < newest  # the held-out figures come from before the cutoff

    decision = commands.promote(settings)
    assert decision["promoted"] is False and "already" in decision["message"]
    assert champion_version(client, settings) == 1

    out = tmp_path / "offers.parquet"
    result = commands.recommend(settings, SAMPLE, out, k=5)
    offers = pd.read_parquet(out)
    assert list(offers.columns) == list(OUTPUT_COLUMNS) and result["offers"] == len(offers)
    assert offers.groupby("order_id")["rank"].max().max() == 5 and (offers["model_version"] == 1).all()
    anonymous = offers[offers["customer_id"].isna()]
    assert result["anonymous_orders"] > 0 and len(anonymous) > 0  # cold start still gets offers

    lines = read_purchase_history(SAMPLE).lines
    basket = set(zip(lines["order_id"], lines["product_id"], strict=True))
    assert not any((o, p) in basket for o, p in zip(offers["order_id"], offers["product_id"], strict=True))

    # a file of new orders only: history comes from what the feature store knows of the customer
    customer = lines[lines["customer_id"].notna()]["customer_id"].value_counts().index[0]
    owned = set(FoldStateStore(settings.fold_state_db_url).owned_products([customer])[customer])
    assert len(owned) > 20
    bought = lines[(lines["customer_id"] == customer) & ~lines["is_return"]].iloc[-1]
    new_orders = tmp_path / "new_orders.csv"
    pd.DataFrame(
        [
            {
                "order_id": "N1",
                "customer_id": customer,
                "product_id": bought["product_id"],
                "quantity": 1,
                "unit_price": float(bought["unit_price"]),
                "ordered_at": (lines["ordered_at"].max() + pd.Timedelta(days=2)).isoformat(),
            }
        ]
    ).to_csv(new_orders, index=False)
    commands.recommend(settings, new_orders, tmp_path / "new.parquet", k=10)
    offered = set(pd.read_parquet(tmp_path / "new.parquet")["product_id"])
    assert len(offered) == 10 and not offered & owned
