"""The paired comparison of two backtests: per-trigger NDCG from the kept served lists, and the
difference with its interval over the triggers both sides scored."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd

from bench.backtest_pair import compare, per_trigger_ndcg


def _kept(path: Path, lists: dict[str, list[str]]) -> Path:
    served = pd.DataFrame(
        [(t, p, rank) for t, products in lists.items() for rank, p in enumerate(products, start=1)],
        columns=["trigger_id", "product_id", "rank"],
    )
    truth = pd.DataFrame(
        {"trigger_id": ["t1", "t2"], "customer_id": ["C1", "C2"], "order_id": ["O1", "O2"], "truth": [["A"], ["B"]]}
    )
    path.write_bytes(pickle.dumps((served.sample(frac=1.0, random_state=0), truth, 10)))
    return path


def test_each_trigger_is_scored_on_its_served_list_in_rank_order(tmp_path: Path) -> None:
    scores = per_trigger_ndcg(_kept(tmp_path / "kept.pkl", {"t1": ["A", "X"], "t2": ["X", "B"]}))
    assert scores[("C1", "O1")] == 1.0  # the truth first
    assert 0.0 < scores[("C2", "O2")] < 1.0  # the truth second


def test_the_difference_is_paired_over_the_triggers_both_sides_have() -> None:
    base = {("C1", "O1"): 0.2, ("C2", "O2"): 0.4, ("C3", "O3"): 0.9}
    head = {("C1", "O1"): 0.3, ("C2", "O2"): 0.5}  # C3 only in the base: not compared
    result = compare(base, head)
    assert result["triggers"] == 2
    assert result["base_ndcg"] == 0.3 and result["head_ndcg"] == 0.4
    assert result["difference"] == 0.1
    # every trigger moved by the same 0.1: pairing leaves no noise around it
    assert result["difference_low"] == result["difference_high"] == 0.1
