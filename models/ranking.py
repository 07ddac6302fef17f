"""Scoring ranker rows with a booster and keeping the best k per trigger: the one path that
training's evaluation, batch recommendation and the offer service share."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.features import FEATURE_COLUMNS

RECOMMENDATION_COLUMNS = ("model", "trigger_id", "product_id", "rank", "offer_type", "reason", "score")


def score_rows(
    booster: object,
    rows: pd.DataFrame,
    feature_columns: tuple[str, ...] = FEATURE_COLUMNS,
    threads: int = 0,
) -> np.ndarray:
    """Scores of feature rows by a LightGBM booster (or anything with ``predict``); ``threads`` 0
    leaves LightGBM's default (all cores)."""
    if rows.empty:
        return np.zeros(0)
    # a float matrix: LightGBM's DataFrame checks cost more than predict
    return score_matrix(booster, rows[list(feature_columns)].to_numpy(dtype=np.float64), threads)


def score_matrix(booster: object, values: np.ndarray, threads: int = 0) -> np.ndarray:
    """``score_rows`` of a float matrix whose columns are the booster's features, in order."""
    if len(values) == 0:
        return np.zeros(0)
    options = {"num_threads": threads} if threads > 0 else {}
    return np.asarray(booster.predict(values, **options), dtype=float)  # type: ignore[attr-defined]


def best_rows(triggers: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the k best-scored rows of each trigger and their 1-based ranks: triggers in
    sorted order, best first within a trigger, equal scores in row order. ``triggers`` holds each
    row's trigger id, or its trigger's integer code (a row of the trigger table: nothing to hash).
    In numpy: a pandas sort and group-by cost more than the scoring itself on a small serving batch."""
    trigger_code = trigger_codes(triggers)
    order = np.lexsort((-np.asarray(scores, dtype=float), trigger_code))
    ordered = trigger_code[order]
    rank = np.arange(len(order)) - np.searchsorted(ordered, ordered, side="left") + 1
    keep = rank <= k
    return order[keep], rank[keep]


def trigger_codes(triggers: np.ndarray) -> np.ndarray:
    """Integer codes in the order of the triggers' ids (integers already are codes)."""
    values = np.asarray(triggers)
    return values if values.dtype.kind in "iu" else pd.factorize(values, sort=True)[0]


def top_k(rows: pd.DataFrame, scores: np.ndarray, k: int = 10, model: str = "ranker") -> pd.DataFrame:
    """The k best-scored rows per trigger as a recommendation table (``RECOMMENDATION_COLUMNS``)."""
    best, rank = best_rows(rows["trigger_id"].to_numpy(), scores, k)
    ranked = rows.iloc[best][["trigger_id", "product_id", "offer_type", "reason"]]
    ranked = ranked.assign(score=np.asarray(scores, dtype=float)[best], rank=rank, model=model)
    return ranked[list(RECOMMENDATION_COLUMNS)].reset_index(drop=True)
