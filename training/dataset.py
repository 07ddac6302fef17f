"""Ranker rows: one row per (trigger, candidate) with features and, for training, a label.

One feature-building path serves training, evaluation, batch recommendation and the real-time
offer service: ``build_feature_rows(candidates, triggers, customer_features, product_features)``.
Callers differ only in where the feature values come from:

* training / evaluation / batch: Feast point-in-time retrieval (``fetch_customer_features`` at each
  trigger's exact time, ``fetch_product_features`` once per (product, ``window_cutoff``));
* serving: Feast online reads, passed in the same shape.

Shapes: ``candidates`` come from ``candidates_with_context`` (the generator's rows plus item
context); ``customer_features`` is indexed by trigger_id with the ``customer_stats_fv`` columns;
``product_features`` is indexed by (window_cutoff, product_id) with the ``product_stats_fv``
columns; missing entries are NaN (cold start). ``FEATURE_COLUMNS`` is the model's input, in order.

Training data (``build_training_set``): training triggers in several windows inside the training
period (labels strictly before the cutoff, see ``training.protocol``), candidates from one index
per window (``models.candidates.candidates_by_window``), label 1 when the candidate is in the
trigger's truth. Triggers whose candidates hold no positive are dropped (they carry no gradient
in lambdarank). Several windows (``window_days`` apart, as many as fit after ``min_history_days``
of history, at most ``max_windows``) and up to ``orders_per_customer`` triggers per customer and
window give the ranker enough groups.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.derived import add_time_features
from features.historical import historical_features
from models.candidates import ALL_SOURCES, CandidateConfig, CandidateGenerator
from models.index import CandidateIndex, IndexConfig
from training.protocol import build_training_triggers
from xsell.settings import Settings

log = logging.getLogger(__name__)

CUSTOMER_VIEW = "customer_stats_fv"
PRODUCT_VIEW = "product_stats_fv"
SOURCE_CODES = {name: code for code, name in enumerate(ALL_SOURCES)}
CUSTOMER_NUMERIC = (
    "order_count", "lifetime_spend", "avg_order_value", "distinct_products", "avg_unit_price",
    "return_rate", "returned_units_rate",
)
PRODUCT_NUMERIC = (
    "current_price", "median_price", "price_percentile", "popularity_7d", "popularity_30d", "popularity_90d",
    "total_orders", "distinct_buyers", "repeat_purchase_rate", "return_rate",
)
FEATURE_COLUMNS: tuple[str, ...] = (
    # candidate generation: fused order, winning source, per-source scores and ranks
    "candidate_rank", "fused_score", "source_code", "source_rank", "is_up_sell",
    *(f"score_{s}" for s in ALL_SOURCES), *(f"rank_{s}" for s in ALL_SOURCES),
    # pair features against the seed item
    "co_count", "confidence", "lift", "price_ratio", "same_category", "seed_in_basket", "seed_recency",
    # the candidate item in the index (as of the window start)
    "item_median_price", "item_recent_customers", "item_customers", "item_return_rate",
    # customer (Feast, as of the trigger) and derived time features
    *(f"customer_{c}" for c in CUSTOMER_NUMERIC), "days_since_last_order", "customer_tenure_days",
    # product (Feast, as of the window start) and derived time features
    *(f"product_{c}" for c in PRODUCT_NUMERIC), "days_since_product_sale", "product_trend",
    # trigger context and customer x candidate
    "basket_size", "history_size", "is_new_customer", "basket_mean_price", "price_vs_basket",
    "price_vs_customer", "category_affinity", "in_top_categories", "basket_category_share",
    "history_category_share",
)


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of the training set (none is tuned to one data set)."""

    horizon_days: int = 30
    window_days: int = 30
    max_windows: int = 8
    min_history_days: int = 60
    orders_per_customer: int = 3
    n_candidates: int = 300

    def candidate_config(self) -> CandidateConfig:
        """The candidate generator's settings for ranker rows."""
        return CandidateConfig(n_candidates=self.n_candidates)


@dataclass
class TrainingSet:
    """Labelled ranker rows (sorted by window, trigger, candidate rank) and their triggers."""

    rows: pd.DataFrame
    triggers: pd.DataFrame
    windows: int

    @property
    def groups(self) -> np.ndarray:
        """Rows per trigger, in row order (LightGBM's ``group``)."""
        return self.rows.groupby("trigger_id", sort=False).size().to_numpy()


def window_count(lines: pd.DataFrame, cutoff: pd.Timestamp, config: DatasetConfig) -> int:
    """How many training windows fit between ``min_history_days`` after the data's start and the
    cutoff (at least 1, at most ``max_windows``)."""
    span = (cutoff - lines["ordered_at"].min()).total_seconds() / 86_400 - config.min_history_days
    return int(max(1, min(config.max_windows, span // config.window_days)))


def build_training_set(
    settings: Settings, lines: pd.DataFrame, cutoff: pd.Timestamp, config: DatasetConfig | None = None,
    index_config: IndexConfig | None = None,
) -> TrainingSet:
    """Labelled rows from training triggers strictly before ``cutoff`` (features from Feast)."""
    config = config or DatasetConfig()
    windows = window_count(lines, cutoff, config)
    trigger_set = build_training_triggers(
        lines, cutoff, config.horizon_days, windows, config.window_days, config.orders_per_customer)
    triggers = trigger_set.triggers
    log.info("training triggers", extra={"triggers": len(triggers), "windows": windows})
    candidates = candidates_per_window(lines[lines["ordered_at"] < cutoff], triggers, index_config,
                                       config.candidate_config())
    candidates = _label(candidates, triggers)
    positives = candidates.groupby("trigger_id")["label"].transform("max") > 0
    candidates = candidates[positives.to_numpy()]
    triggers = triggers[triggers["trigger_id"].isin(set(candidates["trigger_id"]))].reset_index(drop=True)
    rows = feature_rows_from_store(settings, candidates, triggers)
    rows["label"] = candidates["label"].to_numpy()
    return TrainingSet(rows=rows, triggers=triggers, windows=windows)


def feature_rows_from_store(settings: Settings, candidates: pd.DataFrame, triggers: pd.DataFrame) -> pd.DataFrame:
    """``build_feature_rows`` with point-in-time features from the Feast offline store."""
    customers = fetch_customer_features(settings, triggers)
    products = fetch_product_features(settings, candidates, triggers)
    return build_feature_rows(candidates, triggers, customers, products)


def fetch_customer_features(settings: Settings, triggers: pd.DataFrame) -> pd.DataFrame:
    """Customer features as of each trigger's exact time, indexed by trigger_id (NaN when unknown
    or anonymous)."""
    known = triggers[triggers["customer_id"].notna()]
    entity = pd.DataFrame({"customer_id": known["customer_id"].astype(str).to_numpy(),
                           "event_timestamp": known["at"].to_numpy()})
    values = historical_features(settings, entity, CUSTOMER_VIEW) if len(entity) else pd.DataFrame()
    values.index = known["trigger_id"].to_numpy()
    return values.reindex(triggers["trigger_id"].to_numpy())


def fetch_product_features(settings: Settings, candidates: pd.DataFrame, triggers: pd.DataFrame) -> pd.DataFrame:
    """Product features once per (window_cutoff, product_id) of the candidates, as of the window
    start, indexed by (window_cutoff, product_id)."""
    window = candidates["trigger_id"].map(triggers.set_index("trigger_id")["window_cutoff"])
    keys = pd.DataFrame({"window_cutoff": window.to_numpy(), "product_id": candidates["product_id"].to_numpy()})
    keys = keys.drop_duplicates().reset_index(drop=True)
    entity = pd.DataFrame({"product_id": keys["product_id"], "event_timestamp": keys["window_cutoff"]})
    values = historical_features(settings, entity, PRODUCT_VIEW) if len(entity) else pd.DataFrame()
    values.index = pd.MultiIndex.from_frame(keys)
    return values


def build_feature_rows(
    candidates: pd.DataFrame, triggers: pd.DataFrame, customer_features: pd.DataFrame,
    product_features: pd.DataFrame,
) -> pd.DataFrame:
    """One row per candidate: trigger_id, product_id, offer_type, reason, then ``FEATURE_COLUMNS``.

    ``triggers`` needs trigger_id, at, window_cutoff, basket and history; see the module docstring
    for the feature frames' shapes.
    """
    t = triggers.set_index("trigger_id")
    trigger_id = candidates["trigger_id"].to_numpy()
    # add_time_features reads int64 of the timestamps as nanoseconds: give it nanosecond units
    at = pd.to_datetime(t["at"], utc=True).dt.as_unit("ns").reindex(trigger_id)
    window = pd.to_datetime(t["window_cutoff"], utc=True).dt.as_unit("ns").reindex(trigger_id)
    out = pd.DataFrame({
        "trigger_id": trigger_id, "product_id": candidates["product_id"].to_numpy(),
        "offer_type": candidates["offer_type"].to_numpy(), "reason": candidates["reason"].to_numpy(),
    })
    for column in ("candidate_rank", "fused_score", "source_rank", "co_count", "confidence", "lift", "price_ratio",
                   *(f"score_{s}" for s in ALL_SOURCES), *(f"rank_{s}" for s in ALL_SOURCES)):
        out[column] = candidates[column].to_numpy(dtype=float)
    out["source_code"] = candidates["source"].map(SOURCE_CODES).to_numpy(dtype=float)
    out["is_up_sell"] = (candidates["offer_type"] == "up_sell").to_numpy(dtype=float)
    out["same_category"] = candidates["same_category"].to_numpy(dtype=float)
    for column in ("median_price", "recent_customers", "customers", "return_rate"):
        out[f"item_{column}"] = candidates[column].to_numpy(dtype=float)

    basket = t["basket"].reindex(trigger_id).to_numpy()
    history = t["history"].reindex(trigger_id).to_numpy()
    seed_keys = pd.MultiIndex.from_arrays([trigger_id, candidates["seed_product_id"].to_numpy()])
    in_basket = t["basket"].explode().dropna()
    in_basket = pd.Series(1.0, index=pd.MultiIndex.from_arrays([in_basket.index, in_basket.to_numpy()])).groupby(level=[0, 1]).first()
    out["seed_in_basket"] = in_basket.reindex(seed_keys).fillna(0.0).to_numpy()
    recency = t["history"].explode().dropna()
    recency = pd.Series(recency.groupby(level=0).cumcount().to_numpy() + 1.0,
                        index=pd.MultiIndex.from_arrays([recency.index, recency.to_numpy()]))
    out["seed_recency"] = recency.groupby(level=[0, 1]).first().reindex(seed_keys).to_numpy(dtype=float)

    customers = customer_features.reindex(trigger_id)
    customers = add_time_features(customers.reset_index(drop=True), at.reset_index(drop=True))
    for column in CUSTOMER_NUMERIC:
        out[f"customer_{column}"] = _numeric(customers, column)
    for column in ("days_since_last_order", "customer_tenure_days"):
        out[column] = _numeric(customers, column)

    keys = pd.MultiIndex.from_arrays([window.to_numpy(), out["product_id"].to_numpy()])
    products = product_features.reindex(keys)
    products = add_time_features(products.reset_index(drop=True), window.reset_index(drop=True))
    for column in PRODUCT_NUMERIC:
        out[f"product_{column}"] = _numeric(products, column)
    out["days_since_product_sale"] = _numeric(products, "days_since_product_sale")
    out["product_trend"] = out["product_popularity_7d"] * (30 / 7) / (out["product_popularity_30d"] + 1)

    _add_context(out, candidates, trigger_id, basket, history, customers)
    return out[["trigger_id", "product_id", "offer_type", "reason", *FEATURE_COLUMNS]]


def _add_context(
    out: pd.DataFrame, candidates: pd.DataFrame, trigger_id: np.ndarray, basket: np.ndarray,
    history: np.ndarray, customers: pd.DataFrame,
) -> None:
    """Trigger context and customer x candidate features (see ``with_item_context``)."""
    out["basket_size"] = [float(len(b)) for b in basket]
    out["history_size"] = [float(len(h)) for h in history]
    out["is_new_customer"] = (out["history_size"] == 0).astype(float)
    price = candidates["median_price"].to_numpy(dtype=float)
    out["basket_mean_price"] = candidates["basket_mean_price"].to_numpy(dtype=float)
    out["price_vs_basket"] = price / out["basket_mean_price"].to_numpy()
    out["price_vs_customer"] = price / out["customer_avg_unit_price"].replace(0, np.nan).to_numpy()
    category = candidates["item_category"].to_numpy(dtype=object)
    none = pd.Series([None] * len(out))
    affinity = customers.get("category_affinity", none).to_numpy(dtype=object)
    top = customers.get("top_categories", none).to_numpy(dtype=object)
    parsed: dict[str, dict[str, float]] = {}
    out["category_affinity"] = [_affinity(a, c, parsed) for a, c in zip(affinity, category, strict=True)]
    out["in_top_categories"] = [
        float(isinstance(c, str) and c in s.split("|")) if isinstance(s, str) else np.nan
        for c, s in zip(category, top, strict=True)]
    out["basket_category_share"] = candidates["basket_category_share"].to_numpy(dtype=float)
    out["history_category_share"] = candidates["history_category_share"].to_numpy(dtype=float)


def candidates_with_context(index: CandidateIndex, triggers: pd.DataFrame, config: CandidateConfig) -> pd.DataFrame:
    """Candidates of ``triggers`` from ``index`` plus the item context ``build_feature_rows``
    reads: item_category, basket_mean_price (mean median price of the basket's known items) and the
    shares of the basket's and history's known items in the candidate's category."""
    candidates = CandidateGenerator(index, config).candidates_for_triggers(triggers)
    if candidates.empty:
        return candidates.assign(item_category=None, basket_mean_price=np.nan, basket_category_share=np.nan,
                                 history_category_share=np.nan)
    products = index.products.set_index("product_id")
    category = products["category"].astype(object).where(products["category"].notna(), None)
    price = products["median_price"]
    candidates["item_category"] = candidates["product_id"].map(category).to_numpy(dtype=object)
    keys = pd.MultiIndex.from_arrays([candidates["trigger_id"], candidates["item_category"]])
    for name, column in (("basket_category_share", "basket"), ("history_category_share", "history")):
        items = triggers[["trigger_id", column]].explode(column).dropna()
        items = items.assign(category=items[column].map(category).to_numpy(), price=items[column].map(price).to_numpy())
        if column == "basket":
            basket_price = items.groupby("trigger_id")["price"].mean()
            candidates["basket_mean_price"] = candidates["trigger_id"].map(basket_price).to_numpy(dtype=float)
        known = items.dropna(subset=["category"])
        shares = known.groupby(["trigger_id", "category"]).size() / known.groupby("trigger_id").size()
        has_known = candidates["trigger_id"].isin(set(known["trigger_id"])).to_numpy()
        values = shares.reindex(keys).to_numpy(dtype=float)
        candidates[name] = np.where(has_known, np.nan_to_num(values, nan=0.0), np.nan)
    return candidates


def candidates_per_window(
    lines: pd.DataFrame, triggers: pd.DataFrame, index_config: IndexConfig | None, config: CandidateConfig,
) -> pd.DataFrame:
    """Candidates with context for training triggers without leakage: one index per
    ``window_cutoff``, built from the lines before it (as ``models.candidates.candidates_by_window``)."""
    frames = []
    for window_cutoff, group in triggers.groupby("window_cutoff", sort=True):
        index = CandidateIndex.build(lines, pd.Timestamp(window_cutoff), index_config)
        frames.append(candidates_with_context(index, group, config))
    return pd.concat(frames, ignore_index=True)


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats (NaN where missing or not a number; all NaN when the column is absent)."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _affinity(raw: object, category: object, cache: dict[str, dict[str, float]]) -> float:
    """The customer's spend share in ``category`` from the ``category_affinity`` JSON (NaN if
    unknown customer, 0 if the category is absent)."""
    if not isinstance(raw, str):
        return np.nan
    shares = cache.get(raw)
    if shares is None:
        shares = cache[raw] = json.loads(raw) if raw else {}
    return float(shares.get(category, 0.0)) if isinstance(category, str) else 0.0


def _label(candidates: pd.DataFrame, triggers: pd.DataFrame) -> pd.DataFrame:
    truth = triggers[["trigger_id", "truth"]].explode("truth").dropna()
    positive = pd.MultiIndex.from_arrays([truth["trigger_id"], truth["truth"]])
    pairs = pd.MultiIndex.from_arrays([candidates["trigger_id"], candidates["product_id"]])
    return candidates.assign(label=pairs.isin(positive).astype(int)).reset_index(drop=True)
