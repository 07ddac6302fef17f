"""Honest baselines: each ranks k offers per trigger with the same exclusions as the candidates
(never the basket, nothing bought or returned before, no service codes, only offerable items),
filling a short list with recent popularity.

* ``popularity``: most recent buyers in the training period;
* ``bought_together``: "frequently bought together" — same-order co-occurrence with the basket;
* ``item_knn``: personal item-kNN — cosine neighbours of the basket and the customer's history;
* ``upsell_price_band``: same-category items priced within the up-sell band above a basket item;
* ``fused_candidates``: the candidate generator's own fused order (what a ranker must beat).

Each returns a long table: trigger_id, product_id, rank (1 = best), offer_type, reason.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from models.candidates import CandidateConfig, CandidateGenerator
from models.index import CandidateIndex
from models.reasons import POPULARITY

RECOMMENDATION_COLUMNS = ("model", "trigger_id", "product_id", "rank", "offer_type", "reason")
FILL_WEIGHT = 1e-6  # popularity only breaks ties after the baseline's own items

BASELINES: dict[str, CandidateConfig] = {
    "popularity": CandidateConfig(sources=(POPULARITY,), max_history_seeds=0),
    "bought_together": CandidateConfig(
        sources=("basket", POPULARITY), popularity_weight=FILL_WEIGHT, max_history_seeds=0
    ),
    "item_knn": CandidateConfig(sources=("itemknn", POPULARITY), popularity_weight=FILL_WEIGHT, history_weight=1.0),
    "upsell_price_band": CandidateConfig(
        sources=("upsell", POPULARITY), popularity_weight=FILL_WEIGHT, max_history_seeds=0
    ),
    "fused_candidates": CandidateConfig(),
}


def recommend(index: CandidateIndex, triggers: pd.DataFrame, name: str, k: int = 10) -> pd.DataFrame:
    """Top-k offers per trigger from the baseline called ``name`` (see ``BASELINES``)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    generator = CandidateGenerator(index, replace(BASELINES[name], n_candidates=k))
    candidates = generator.candidates_for_triggers(triggers)
    result = candidates.rename(columns={"candidate_rank": "rank"}).assign(model=name)
    return result[list(RECOMMENDATION_COLUMNS)]


def recommend_all(index: CandidateIndex, triggers: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Every baseline's top-k offers, stacked, with a ``model`` column."""
    return pd.concat([recommend(index, triggers, name, k) for name in BASELINES], ignore_index=True)
