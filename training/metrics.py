"""Top-k ranking metrics with binary relevance: NDCG@k (primary), HitRate@k, Recall@k, MRR@k,
and catalog coverage.

Conventions: a ranked list is best first and may be shorter than k; duplicates count once (at
their first position). NDCG@k = DCG@k / IDCG@k with DCG = sum of 1/log2(position + 1) over hits
and IDCG the DCG of min(|truth|, k) hits at the top. Recall@k = hits in the top k / |truth|.
MRR@k = 1 / position of the first hit within the top k, else 0. A trigger with empty truth has no
defined metric: callers drop such triggers (the protocol does). The mean NDCG comes with its 95%
bootstrap interval over triggers (``ndcg_low``, ``ndcg_high``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

METRIC_NAMES = ("ndcg", "hit_rate", "recall", "mrr")


def _top_k(ranked: Sequence[str], k: int) -> list[str]:
    return list(dict.fromkeys(ranked))[:k]


def ndcg_at_k(ranked: Sequence[str], truth: Collection[str], k: int = 10) -> float:
    """Binary-relevance NDCG@k of one ranked list."""
    if not truth:
        raise ValueError("NDCG is undefined for an empty truth")
    gains = [1.0 / np.log2(i + 2) for i, item in enumerate(_top_k(ranked, k)) if item in truth]
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(truth), k)))
    return float(sum(gains) / ideal)


def hit_rate_at_k(ranked: Sequence[str], truth: Collection[str], k: int = 10) -> float:
    """1.0 when any of the top k is relevant, else 0.0."""
    return float(any(item in truth for item in _top_k(ranked, k)))


def recall_at_k(ranked: Sequence[str], truth: Collection[str], k: int = 10) -> float:
    """Fraction of the relevant items found in the top k."""
    if not truth:
        raise ValueError("recall is undefined for an empty truth")
    return sum(item in truth for item in _top_k(ranked, k)) / len(truth)


def reciprocal_rank_at_k(ranked: Sequence[str], truth: Collection[str], k: int = 10) -> float:
    """1 / position of the first relevant item within the top k, else 0."""
    for i, item in enumerate(_top_k(ranked, k)):
        if item in truth:
            return 1.0 / (i + 1)
    return 0.0


def catalog_coverage(recommended: Iterable[str], catalog_size: int) -> float:
    """Distinct recommended items / catalog size."""
    if catalog_size <= 0:
        raise ValueError("catalog size must be positive")
    return len(set(recommended)) / catalog_size


def mean_metrics(
    ranked_lists: Mapping[str, Sequence[str]], truths: Mapping[str, Collection[str]], k: int = 10
) -> dict[str, float]:
    """Mean NDCG/HitRate/Recall/MRR@k over the triggers of ``truths`` (a trigger without a list
    scores 0), plus ``triggers``, the number averaged over."""
    rows = [
        (
            ndcg_at_k(ranked_lists.get(t, ()), truth, k),
            hit_rate_at_k(ranked_lists.get(t, ()), truth, k),
            recall_at_k(ranked_lists.get(t, ()), truth, k),
            reciprocal_rank_at_k(ranked_lists.get(t, ()), truth, k),
        )
        for t, truth in truths.items()
    ]
    means = np.asarray(rows).mean(axis=0) if rows else np.full(len(METRIC_NAMES), np.nan)
    low, high = bootstrap_interval([row[0] for row in rows])
    return {
        **{name: float(v) for name, v in zip(METRIC_NAMES, means, strict=True)},
        "ndcg_low": low,
        "ndcg_high": high,
        "triggers": len(rows),
    }


def bootstrap_interval(values: Sequence[float], resamples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` percentile bootstrap interval of the mean of ``values`` (one per trigger):
    how much the mean moves with which triggers a period happens to hold, the noise a
    difference between two models must clear. A fixed seed keeps it reproducible; NaNs when empty."""
    if not values:
        return float("nan"), float("nan")
    data = np.asarray(values, dtype=np.float64)
    picks = np.random.default_rng(0).integers(0, len(data), size=(resamples, len(data)))
    means = data[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))
