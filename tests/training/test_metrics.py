"""Metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    bootstrap_interval,
    catalog_coverage,
    hit_rate_at_k,
    mean_metrics,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)


def test_ndcg_by_hand() -> None:
    # hits at positions 2 and 3; ideal: two hits at positions 1 and 2
    expected = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "b", "c"], {"b", "c"}, k=10) == pytest.approx(expected)
    assert ndcg_at_k(["b", "c", "x"], {"b", "c"}, k=10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y", "b"], {"b"}, k=2) == 0.0
    # more truth than k: the ideal is k hits
    assert ndcg_at_k(["a", "b"], {"a", "b", "c", "d"}, k=2) == pytest.approx(1.0)
    # duplicates count once
    assert ndcg_at_k(["a", "a", "b"], {"b"}, k=2) == pytest.approx(1 / math.log2(3))


def test_hit_rate_recall_mrr_by_hand() -> None:
    ranked, truth = ["x", "y", "a", "b"], {"a", "b", "c", "d"}
    assert hit_rate_at_k(ranked, truth, k=2) == 0.0
    assert hit_rate_at_k(ranked, truth, k=3) == 1.0
    assert recall_at_k(ranked, truth, k=10) == pytest.approx(0.5)
    assert reciprocal_rank_at_k(ranked, truth, k=10) == pytest.approx(1 / 3)
    assert reciprocal_rank_at_k(ranked, truth, k=2) == 0.0


def test_coverage_and_means() -> None:
    assert catalog_coverage(["a", "b", "a", "c"], 10) == pytest.approx(0.3)
    means = mean_metrics({"t1": ["a", "x"], "t2": ["y"]}, {"t1": {"a"}, "t2": {"z"}, "t3": {"q"}}, k=10)
    assert means["triggers"] == 3
    assert means["hit_rate"] == pytest.approx(1 / 3)
    assert means["ndcg"] == pytest.approx(1 / 3)
    assert means["mrr"] == pytest.approx(1 / 3)
    assert 0.0 <= means["ndcg_low"] <= means["ndcg"] <= means["ndcg_high"] <= 1.0


def test_the_bootstrap_interval_holds_the_mean_and_narrows_with_more_triggers() -> None:
    few = bootstrap_interval([0.0, 1.0] * 10)
    many = bootstrap_interval([0.0, 1.0] * 1000)
    assert few[0] < 0.5 < few[1] and many[0] < 0.5 < many[1]
    assert many[1] - many[0] < (few[1] - few[0]) / 5  # 100x the triggers: a tenth of the width
    assert bootstrap_interval([0.3] * 50) == pytest.approx((0.3, 0.3))
    assert np.isnan(bootstrap_interval([])[0])


def test_empty_truth_is_refused() -> None:
    with pytest.raises(ValueError, match="empty truth"):
        ndcg_at_k(["a"], set())
    with pytest.raises(ValueError, match="catalog size must be positive"):
        catalog_coverage(["a"], 0)
