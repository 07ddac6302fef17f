"""Offline evaluation of ranked offers against the protocol's truth, overall and per offer type.

``evaluate(recommendations, triggers, index, k)`` returns, in a stable shape::

    {"k": 10, "triggers": 751, "catalog_size": 3680,
     "truth_items": {"cross_sell": ..., "up_sell": ...},
     "models": {name: {"overall":    {"ndcg", "hit_rate", "recall", "mrr", "coverage", "triggers"},
                       "cross_sell": {... same keys},
                       "up_sell":    {... same keys}}}}

Per offer type: each truth item is typed by the rule candidates use (``models.candidates.
offer_types``: ``up_sell`` when it has the category of a trigger-basket item and its median price is
within the up-sell band above it, else ``cross_sell``). A type's metrics are computed over the
triggers with at least one truth item of that type, on the model's ranked list restricted to its
offers of that type (order kept, cut at k), against the truth items of that type.
``coverage`` = distinct items in the top k over all triggers / catalog size (the index's items).

``python -m training.evaluation --data FILE`` runs the protocol and every baseline and prints the
markdown report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from models.candidates import offer_types
from models.index import CandidateIndex, IndexConfig
from training.baselines import recommend_all
from training.metrics import catalog_coverage, mean_metrics
from training.protocol import ProtocolConfig, build_evaluation_triggers, split_cutoff
from xsell.history import read_purchase_history

OFFER_TYPES = ("cross_sell", "up_sell")


def evaluate(recommendations: pd.DataFrame, triggers: pd.DataFrame, index: CandidateIndex, k: int = 10) -> dict:
    """Metrics@k of each model in ``recommendations`` (columns model, trigger_id, product_id, rank,
    offer_type) against the truth of ``triggers``; see the module docstring for the shape."""
    truth = triggers[["trigger_id", "truth"]].explode("truth").rename(columns={"truth": "product_id"}).dropna()
    truth["offer_type"] = offer_types(truth, triggers, index).to_numpy()
    truths = {"overall": truth.groupby("trigger_id")["product_id"].agg(set).to_dict()}
    for offer_type in OFFER_TYPES:
        typed = truth[truth["offer_type"] == offer_type]
        truths[offer_type] = typed.groupby("trigger_id")["product_id"].agg(set).to_dict()
    ordered = recommendations.sort_values(["model", "trigger_id", "rank"], kind="stable")
    models = {}
    for model, recs in ordered.groupby("model", sort=True):
        result = {}
        for scope, scope_truth in truths.items():
            scoped = recs if scope == "overall" else recs[recs["offer_type"] == scope]
            lists = scoped.groupby("trigger_id")["product_id"].agg(list).to_dict()
            metrics = mean_metrics(lists, scope_truth, k)
            top = scoped.groupby("trigger_id").head(k)["product_id"]
            metrics["coverage"] = catalog_coverage(top, max(index.size, 1))
            result[scope] = metrics
        models[str(model)] = result
    return {
        "k": k,
        "triggers": len(triggers),
        "catalog_size": index.size,
        "truth_items": {t: int((truth["offer_type"] == t).sum()) for t in OFFER_TYPES},
        "models": models,
    }


def render_markdown(result: dict) -> str:
    """A markdown report of an ``evaluate`` result: one table per scope, one row per model."""
    k = result["k"]
    lines = [
        f"# Offline evaluation (k={k})",
        "",
        f"{result['triggers']} triggers; catalog {result['catalog_size']} items; truth items: "
        + ", ".join(f"{t} {n}" for t, n in result["truth_items"].items()),
        "",
    ]
    for scope in ("overall", *OFFER_TYPES):
        lines += [
            f"## {scope}",
            "",
            f"| model | NDCG@{k} | HitRate@{k} | Recall@{k} | MRR@{k} | coverage | triggers |",
            "|---|---|---|---|---|---|---|",
        ]
        for model, scopes in result["models"].items():
            m = scopes[scope]
            lines.append(
                f"| {model} | {m['ndcg']:.4f} | {m['hit_rate']:.4f} | {m['recall']:.4f} | {m['mrr']:.4f} "
                f"| {m['coverage']:.4f} | {m['triggers']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the protocol and every baseline on a purchase-history file; print the report."""
    parser = argparse.ArgumentParser(description="Evaluate the baselines on a time-based split of a purchase history.")
    parser.add_argument("--data", type=Path, required=True, help="purchase-history file (canonical or UCI layout)")
    parser.add_argument("--test-days", type=int, default=ProtocolConfig.test_days)
    parser.add_argument("--horizon-days", type=int, default=ProtocolConfig.horizon_days)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    lines = read_purchase_history(args.data).lines
    cutoff = split_cutoff(lines, args.test_days)
    trigger_set = build_evaluation_triggers(lines, cutoff, args.horizon_days)
    index = CandidateIndex.build(lines, cutoff, IndexConfig())
    result = evaluate(recommend_all(index, trigger_set.triggers, args.k), trigger_set.triggers, index, args.k)
    print(render_markdown(result))
    print(
        f"cutoff {cutoff}; dropped {trigger_set.dropped_empty_truth} triggers with empty truth; "
        f"{time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
