"""Batch scoring of an orders file with the champion ranker.

Every purchase order of the file is a trigger (anonymous ones too: they get cold-start offers
without customer features or history). The customer's history before the order is what the system
knows of them (everything the feature store's fold state holds from before the order, the history
the offer service reads: ``features.owned``) plus the file's earlier orders; customer features come from the Feast offline store as of the order's time, product
features as of the start of the order's day. Candidates come from the champion's own candidate
index (downloaded from its training run), so the offers are those the model was trained to rank.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from features.owned import PurchaseTimes, bought_before, merge_bought, most_recent_first
from features.state import FoldStateStore
from models.champion import load_champion
from models.features import candidates_with_context, feature_rows_from_store
from models.ranking import score_rows, top_k
from xsell.history import read_purchase_history
from xsell.settings import Settings

OUTPUT_COLUMNS = ("order_id", "customer_id", "rank", "product_id", "offer_type", "score", "reason", "model_version")
log = logging.getLogger(__name__)


def order_triggers(lines: pd.DataFrame, known: Mapping[str, PurchaseTimes] | None = None) -> pd.DataFrame:
    """One trigger per purchase order: basket, the customer's earlier purchases (most recent first:
    those in ``known``, the fold state's purchase times, before the order, and those of the file's
    earlier orders) and earlier returns in the file; window_cutoff = the start of the order's day."""
    known = known or {}
    purchases = lines[~lines["is_return"]].sort_values(["ordered_at", "order_id"], kind="stable")
    returns = lines[lines["is_return"]]
    rows = []
    bought: dict[str, dict[str, float]] = {}  # customer -> product -> epoch seconds of its latest order
    returned: dict[str, set[str]] = {}
    return_events = returns.sort_values("ordered_at")[["customer_id", "product_id", "ordered_at"]].to_numpy()
    next_return = 0
    for order_id, order in purchases.groupby("order_id", sort=False):
        customer = order["customer_id"].iloc[0]
        at = order["ordered_at"].min()
        while next_return < len(return_events) and return_events[next_return][2] < at:
            r_customer, r_product, _ = return_events[next_return]
            if isinstance(r_customer, str):
                returned.setdefault(r_customer, set()).add(r_product)
            next_return += 1
        identified = isinstance(customer, str)
        earlier = bought.get(customer, {}) if identified else {}
        stored = bought_before(known[customer], at.timestamp()) if identified and customer in known else {}
        history = most_recent_first(merge_bought(stored, earlier))
        rows.append(
            {
                "trigger_id": str(order_id),
                "order_id": str(order_id),
                "customer_id": customer if identified else None,
                "at": at,
                "window_cutoff": at.floor("D"),
                "basket": tuple(dict.fromkeys(order["product_id"])),
                "history": history,
                "returned": tuple(returned.get(customer, ())) if identified else (),
            }
        )
        if identified:
            mine = bought.setdefault(customer, {})
            for product in order["product_id"]:
                mine[product] = at.timestamp()
    return pd.DataFrame(
        rows, columns=["trigger_id", "order_id", "customer_id", "at", "window_cutoff", "basket", "history", "returned"]
    )


def recommend_orders(settings: Settings, orders_path: Path, out_path: Path, k: int = 10) -> dict[str, object]:
    """Score every purchase order of ``orders_path`` with the champion; write the top k per order
    to ``out_path`` (Parquet, ``OUTPUT_COLUMNS``); return a summary."""
    lines = read_purchase_history(orders_path).lines
    customers = lines["customer_id"].dropna().unique().tolist()
    fold_state = FoldStateStore(settings.fold_state_db_url)
    try:
        known = fold_state.purchase_times(customers)
    finally:
        fold_state.close()
    triggers = order_triggers(lines, known)
    with tempfile.TemporaryDirectory() as scratch:
        champion = load_champion(settings, Path(scratch))
    candidates = candidates_with_context(champion.generator, triggers)
    rows = feature_rows_from_store(settings, candidates, triggers)
    best = top_k(rows, score_rows(champion.booster, rows), k)
    best = best.merge(triggers[["trigger_id", "order_id", "customer_id"]], on="trigger_id")
    best["model_version"] = champion.version
    out = best[list(OUTPUT_COLUMNS)].sort_values(["order_id", "rank"]).reset_index(drop=True)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(out_path, index=False)
    summary = {
        "orders": len(triggers),
        "orders_with_offers": int(out["order_id"].nunique()),
        "anonymous_orders": int(triggers["customer_id"].isna().sum()),
        "offers": len(out),
        "model_version": champion.version,
        "out": str(out_path),
    }
    log.info("batch recommendations written", extra=summary)
    return summary
