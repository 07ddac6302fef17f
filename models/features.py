"""Ranker rows: one row per (trigger, candidate) with the ranker's features.

One feature-building path serves training, evaluation, batch recommendation and the real-time
offer service: ``feature_matrix(candidates, triggers, customer_features, product_features)``
(``build_feature_rows`` is its DataFrame form). Callers differ only in where the feature values
come from:

* training / evaluation / batch: Feast point-in-time retrieval (``fetch_customer_features`` at each
  trigger's exact time, ``fetch_product_features`` once per (product, ``window_cutoff``));
* serving: Feast online reads, passed in the same shape.

Shapes: ``candidates`` come from ``candidates_with_context`` (the generator's rows plus item
context); ``customer_features`` is indexed by trigger_id with the ``customer_stats_fv`` columns;
``product_features`` is indexed by (window_cutoff, product_id) with the ``product_stats_fv``
columns; missing entries are NaN (cold start). ``FEATURE_COLUMNS`` is the model's input, in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.derived import TIME_FEATURES, days_since, epoch_seconds
from features.historical import historical_features
from models.candidates import ALL_SOURCES, CandidateGenerator, Triggers, trigger_count
from xsell.settings import Settings

CUSTOMER_VIEW = "customer_stats_fv"
PRODUCT_VIEW = "product_stats_fv"
SOURCE_CODES = {name: code for code, name in enumerate(ALL_SOURCES)}
CUSTOMER_NUMERIC = (
    "order_count",
    "lifetime_spend",
    "avg_order_value",
    "distinct_products",
    "avg_unit_price",
    "return_rate",
    "returned_units_rate",
)
PRODUCT_NUMERIC = (
    "current_price",
    "median_price",
    "price_percentile",
    "popularity_7d",
    "popularity_30d",
    "popularity_90d",
    "total_orders",
    "distinct_buyers",
    "repeat_purchase_rate",
    "return_rate",
)
CUSTOMER_TEXT = ("category_affinity", "top_categories")
CUSTOMER_READ = (*CUSTOMER_NUMERIC, *TIME_FEATURES, *TIME_FEATURES.values())  # numbers a trigger row reads
PRODUCT_READ = (*PRODUCT_NUMERIC, "last_sold_ts")  # numbers a candidate row reads
FEATURE_COLUMNS: tuple[str, ...] = (
    # candidate generation: fused order, winning source, per-source scores and ranks
    "candidate_rank",
    "fused_score",
    "source_code",
    "source_rank",
    "is_up_sell",
    *(f"score_{s}" for s in ALL_SOURCES),
    *(f"rank_{s}" for s in ALL_SOURCES),
    # pair features against the seed item
    "co_count",
    "confidence",
    "lift",
    "price_ratio",
    "same_category",
    "seed_in_basket",
    "seed_recency",
    # the candidate item in the index (as of the window start)
    "item_median_price",
    "item_recent_customers",
    "item_customers",
    "item_return_rate",
    # customer (Feast, as of the trigger) and derived time features
    *(f"customer_{c}" for c in CUSTOMER_NUMERIC),
    "days_since_last_order",
    "customer_tenure_days",
    # product (Feast, as of the window start) and derived time features
    *(f"product_{c}" for c in PRODUCT_NUMERIC),
    "days_since_product_sale",
    "product_trend",
    # trigger context and customer x candidate
    "basket_size",
    "history_size",
    "is_new_customer",
    "basket_mean_price",
    "price_vs_basket",
    "price_vs_customer",
    "category_affinity",
    "in_top_categories",
    "basket_category_share",
    "history_category_share",
)


def feature_rows_from_store(settings: Settings, candidates: pd.DataFrame, triggers: pd.DataFrame) -> pd.DataFrame:
    """``build_feature_rows`` with point-in-time features from the Feast offline store."""
    customers = fetch_customer_features(settings, triggers)
    products = fetch_product_features(settings, candidates, triggers)
    return build_feature_rows(candidates, triggers, customers, products)


def fetch_customer_features(settings: Settings, triggers: pd.DataFrame) -> pd.DataFrame:
    """Customer features as of each trigger's exact time, indexed by trigger_id (NaN when unknown
    or anonymous)."""
    known = triggers[triggers["customer_id"].notna()]
    entity = pd.DataFrame(
        {"customer_id": known["customer_id"].astype(str).to_numpy(), "event_timestamp": known["at"].to_numpy()}
    )
    values = historical_features(settings, entity, CUSTOMER_VIEW) if len(entity) else pd.DataFrame()
    values.index = known["trigger_id"].to_numpy()
    return values.reindex(triggers["trigger_id"].to_numpy())


def fetch_product_features(settings: Settings, candidates: pd.DataFrame, triggers: pd.DataFrame) -> pd.DataFrame:
    """Product features once per (window_cutoff, product_id) of the candidates, as of the window
    start, indexed by (window_cutoff, product_id)."""
    window = _per_candidate(_utc(triggers["window_cutoff"]), _trigger_positions(candidates, triggers))
    keys = pd.DataFrame({"window_cutoff": window, "product_id": candidates["product_id"].to_numpy()})
    return product_features_at(settings, keys)


def product_features_at(settings: Settings, keys: pd.DataFrame) -> pd.DataFrame:
    """Product features of each distinct (window_cutoff, product_id) row of ``keys``, as of that
    window start, indexed by (window_cutoff, product_id) (``window_cutoff`` in UTC)."""
    keys = pd.DataFrame(
        {"window_cutoff": _utc(keys["window_cutoff"]).array, "product_id": keys["product_id"].to_numpy()}
    )
    keys = keys.drop_duplicates().reset_index(drop=True)
    entity = pd.DataFrame({"product_id": keys["product_id"], "event_timestamp": keys["window_cutoff"]})
    values = historical_features(settings, entity, PRODUCT_VIEW) if len(entity) else pd.DataFrame()
    values.index = pd.MultiIndex.from_frame(keys)
    return values


@dataclass(frozen=True)
class FeatureMatrix:
    """Ranker rows as arrays: ``labels`` (trigger_id, product_id, offer_type, reason columns) and
    ``values``, one row per candidate and a column per ``FEATURE_COLUMNS`` entry, as the booster
    reads them. The serving path scores ``values`` without building a DataFrame."""

    labels: dict[str, np.ndarray]
    values: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """The rows as ``build_feature_rows`` returns them."""
        return pd.concat([pd.DataFrame(self.labels), pd.DataFrame(self.values, columns=list(FEATURE_COLUMNS))], axis=1)


def build_feature_rows(
    candidates: pd.DataFrame | Mapping[str, np.ndarray],
    triggers: pd.DataFrame,
    customer_features: pd.DataFrame,
    product_features: pd.DataFrame,
) -> pd.DataFrame:
    """One row per candidate: trigger_id, product_id, offer_type, reason, then ``FEATURE_COLUMNS``
    (``feature_matrix`` as a DataFrame)."""
    return feature_matrix(candidates, triggers, customer_features, product_features).to_frame()


def feature_matrix(
    candidates: pd.DataFrame | Mapping[str, np.ndarray],
    triggers: pd.DataFrame,
    customer_features: pd.DataFrame,
    product_features: pd.DataFrame,
) -> FeatureMatrix:
    """The ranker's features of each candidate.

    ``triggers`` needs trigger_id, at, window_cutoff, basket and history; see the module docstring
    for the feature frames' shapes. ``product_features`` may also be indexed by product_id alone
    (the current values, whatever the window). The frames' rows are gathered per trigger and per
    candidate (`customer_columns`, `product_columns`), then `aligned_feature_matrix` computes.
    """
    t_pos = _trigger_positions(candidates, triggers)
    customers = customer_columns(customer_features, np.asarray(triggers["trigger_id"]))
    products = product_columns(product_features, _column(candidates, "product_id"), triggers, t_pos)
    return _matrix(candidates, triggers, t_pos, customers, products)


def customer_columns(
    customer_features: pd.DataFrame | Mapping[str, np.ndarray], trigger_ids: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The customer features the ranker reads, a value per trigger by column: numbers as floats
    (NaN where missing or not a number), ``CUSTOMER_TEXT`` as objects; absent columns are left
    out. A frame indexed by trigger_id gives its rows in ``trigger_ids`` order; columns (an online
    read's) already hold a value per trigger."""
    customers = customer_features
    if isinstance(customer_features, pd.DataFrame) and not customer_features.index.equals(pd.Index(trigger_ids)):
        customers = customer_features.reindex(trigger_ids)
    columns = _numeric_columns(customers, CUSTOMER_READ)
    for name in CUSTOMER_TEXT:
        if name in customers:
            columns[name] = np.asarray(customers[name], dtype=object)
    return columns


def product_columns(
    product_features: pd.DataFrame, product_ids: np.ndarray, triggers: pd.DataFrame, t_pos: np.ndarray
) -> dict[str, np.ndarray]:
    """The product features the ranker reads, a value per candidate (``product_ids``, of the
    triggers at ``t_pos``) by column, as floats (NaN where missing): from a frame indexed by
    (window_cutoff, product_id), the values as of each trigger's window, or by product_id alone,
    the same values whatever the window."""
    if product_features.index.nlevels == 1:
        p_pos = product_features.index.get_indexer(product_ids)
    else:
        window = _per_candidate(_utc(triggers["window_cutoff"]), t_pos)
        p_pos = product_features.index.get_indexer(pd.MultiIndex.from_arrays([window, product_ids]))
    return {name: _take(values, p_pos) for name, values in _numeric_columns(product_features, PRODUCT_READ).items()}


def aligned_feature_matrix(
    candidates: pd.DataFrame | Mapping[str, np.ndarray],
    triggers: Triggers,
    customers: Mapping[str, np.ndarray],
    products: Mapping[str, np.ndarray],
) -> FeatureMatrix:
    """`feature_matrix` of feature values already gathered: ``customers`` a value per trigger row
    and ``products`` a value per candidate, by column (as `customer_columns` and `product_columns`
    give them; an absent column is missing for every row). Serving gathers them from its caches
    without building a frame.

    Values are gathered by position (trigger row, product row) rather than by pandas index
    alignment per candidate: a serving batch has ~100,000 candidate rows, and aligning them costs
    more than scoring them.
    """
    return _matrix(candidates, triggers, _trigger_positions(candidates, triggers), customers, products)


def _matrix(
    candidates: pd.DataFrame | Mapping[str, np.ndarray],
    triggers: Triggers,
    t_pos: np.ndarray,
    customers: Mapping[str, np.ndarray],
    products: Mapping[str, np.ndarray],
) -> FeatureMatrix:
    """`aligned_feature_matrix` with each candidate's trigger row (``t_pos``) found already: a
    training batch's candidates carry no trigger rows, and finding them hashes every candidate's
    trigger id."""
    out: dict[str, np.ndarray] = {  # columns, stacked into one matrix at the end
        "trigger_id": _column(candidates, "trigger_id"),
        "product_id": _column(candidates, "product_id"),
        "offer_type": _column(candidates, "offer_type"),
        "reason": _column(candidates, "reason"),
    }
    for column in (
        "candidate_rank",
        "fused_score",
        "source_rank",
        "co_count",
        "confidence",
        "lift",
        "price_ratio",
        *(f"score_{s}" for s in ALL_SOURCES),
        *(f"rank_{s}" for s in ALL_SOURCES),
    ):
        out[column] = _column(candidates, column, float)
    source, names = pd.factorize(_column(candidates, "source", object))  # a hash per row, a dict lookup per name
    out["source_code"] = _take(np.asarray([SOURCE_CODES.get(name, np.nan) for name in names], dtype=float), source)
    out["is_up_sell"] = (_column(candidates, "offer_type") == "up_sell").astype(float)
    out["same_category"] = _column(candidates, "same_category", float)
    for column in ("median_price", "recent_customers", "customers", "return_rate"):
        out[f"item_{column}"] = _column(candidates, column, float)

    basket, history = _flatten(triggers["basket"]), _flatten(triggers["history"])
    seeds = _column(candidates, "seed_product_id", object)
    codes, _ = pd.factorize(np.concatenate([seeds, basket.items, history.items]))
    seed_code, basket_code, history_code = np.split(codes, [len(seeds), len(seeds) + len(basket.items)])
    out["seed_in_basket"] = _pair_lookup(
        (t_pos, seed_code), (basket.group, basket_code), np.ones(len(basket_code)), 0.0
    )
    out["seed_recency"] = _pair_lookup((t_pos, seed_code), (history.group, history_code), history.order + 1.0, np.nan)

    at_s = epoch_seconds(triggers["at"])
    for column in CUSTOMER_NUMERIC:
        out[f"customer_{column}"] = _take(customers.get(column), t_pos)
    for column in ("days_since_last_order", "customer_tenure_days"):
        out[column] = _time_feature(customers, column, at_s)[t_pos]

    for column in PRODUCT_NUMERIC:
        out[f"product_{column}"] = _per_row(products.get(column), len(t_pos))
    sold = _per_row(products.get("last_sold_ts"), len(t_pos))
    out["days_since_product_sale"] = days_since(epoch_seconds(triggers["window_cutoff"])[t_pos], sold)
    out["product_trend"] = out["product_popularity_7d"] * (30 / 7) / (out["product_popularity_30d"] + 1)

    _add_context(out, candidates, t_pos, basket, history, customers)
    by_feature = np.empty((len(FEATURE_COLUMNS), len(t_pos)))
    for at, column in enumerate(FEATURE_COLUMNS):
        by_feature[at] = out[column]
    # rows x features in column order: a contiguous copy per feature, where a row-major stack writes
    # every value with a stride (about three times slower); LightGBM reads either order
    values = by_feature.T
    return FeatureMatrix(
        labels={c: out[c] for c in ("trigger_id", "product_id", "offer_type", "reason")}, values=values
    )


def _add_context(
    out: dict[str, np.ndarray],
    candidates: pd.DataFrame | Mapping[str, np.ndarray],
    t_pos: np.ndarray,
    basket: _Flat,
    history: _Flat,
    customers: Mapping[str, np.ndarray],
) -> None:
    """Trigger context and customer x candidate features (see ``candidates_with_context``);
    ``customers`` has a value per trigger by column."""
    out["basket_size"] = basket.sizes[t_pos].astype(float)
    out["history_size"] = history.sizes[t_pos].astype(float)
    out["is_new_customer"] = (out["history_size"] == 0).astype(float)
    price = _column(candidates, "median_price", float)
    out["basket_mean_price"] = _column(candidates, "basket_mean_price", float)
    out["price_vs_basket"] = price / out["basket_mean_price"]
    out["price_vs_customer"] = price / np.where(
        out["customer_avg_unit_price"] == 0, np.nan, out["customer_avg_unit_price"]
    )

    none = np.full(len(basket.sizes), None, dtype=object)  # a value per trigger
    affinity = customers.get("category_affinity", none)
    top = customers.get("top_categories", none)
    parsed: dict[str, dict[str, float]] = {}
    shares = [_affinity_shares(raw, parsed) for raw in affinity]
    tops = [raw.split("|") if isinstance(raw, str) else [] for raw in top]
    share_group = np.repeat(np.arange(len(shares)), [len(s) for s in shares])
    top_group = np.repeat(np.arange(len(tops)), [len(t) for t in tops])
    category = _column(candidates, "item_category", object)
    codes, _ = pd.factorize(
        np.concatenate(
            [
                category,
                np.asarray([c for s in shares for c in s], dtype=object),
                np.asarray([c for t in tops for c in t], dtype=object),
            ]
        )
    )
    item_code, share_code, top_code = np.split(codes, [len(category), len(category) + len(share_group)])
    share_values = np.asarray([v for s in shares for v in s.values()], dtype=float)
    has_affinity = np.asarray([isinstance(raw, str) for raw in affinity], dtype=bool)
    has_top = np.asarray([isinstance(raw, str) for raw in top], dtype=bool)
    out["category_affinity"] = np.where(
        has_affinity[t_pos], _pair_lookup((t_pos, item_code), (share_group, share_code), share_values, 0.0), np.nan
    )
    out["in_top_categories"] = np.where(
        has_top[t_pos], _pair_lookup((t_pos, item_code), (top_group, top_code), np.ones(len(top_code)), 0.0), np.nan
    )
    out["basket_category_share"] = _column(candidates, "basket_category_share", float)
    out["history_category_share"] = _column(candidates, "history_category_share", float)


def candidates_with_context(generator: CandidateGenerator, triggers: pd.DataFrame) -> pd.DataFrame:
    """Candidates of ``triggers`` from ``generator`` plus the item context ``build_feature_rows``
    reads: item_category, basket_mean_price (mean median price of the basket's known items) and the
    shares of the basket's and history's known items in the candidate's category.

    Callers keep one generator per index (building one prepares lookup tables: a fixed cost that
    would dominate small serving batches)."""
    return pd.DataFrame(candidate_context_columns(generator, triggers)).drop(
        columns=["item", "trigger_row"]
    )  # positions of this index and this trigger table only


def candidate_context_columns(
    generator: CandidateGenerator, triggers: Triggers, threads: int = 0, limit: int = 0
) -> dict[str, np.ndarray]:
    """``candidates_with_context`` as column arrays, which ``build_feature_rows`` also takes: the
    serving path builds no candidate DataFrame (``threads``, ``limit`` and the ``item`` column: see
    ``CandidateGenerator.candidate_columns``)."""
    candidates = generator.candidate_columns(triggers, threads, limit)
    rows = len(candidates["trigger_id"])
    if rows == 0:
        return {
            **candidates,
            "item_category": np.empty(0, dtype=object),
            **{c: np.empty(0) for c in ("basket_mean_price", "basket_category_share", "history_category_share")},
        }
    category_code, categories = generator.category_codes
    price = generator.median_price
    t_pos = _trigger_positions(candidates, triggers)
    n_triggers = trigger_count(triggers)
    item_code = category_code[candidates["item"]]  # -1: no category
    candidates["item_category"] = generator.category_labels[item_code]
    for name, column in (("basket_category_share", "basket"), ("history_category_share", "history")):
        flat = _flatten(triggers[column])
        known_item = generator.positions(flat.items)
        if column == "basket":
            priced = known_item >= 0
            total = np.bincount(flat.group[priced], weights=price[known_item[priced]], minlength=n_triggers)
            count = np.bincount(flat.group[priced], minlength=n_triggers)
            mean = np.divide(total, count, out=np.full(n_triggers, np.nan), where=count > 0)
            candidates["basket_mean_price"] = mean[t_pos]
        code = np.where(known_item >= 0, category_code[known_item], -1)
        known = code >= 0
        per_trigger = np.bincount(flat.group[known], minlength=n_triggers).astype(float)
        width = len(categories) + 1
        pairs, counts = np.unique(flat.group[known].astype(np.int64) * width + code[known], return_counts=True)
        t_of, code_of = pairs // width, pairs % width
        share = counts.astype(float) / per_trigger[t_of]
        values = _pair_lookup((t_pos, item_code), (t_of, code_of), share, 0.0)
        candidates[name] = np.where(per_trigger[t_pos] > 0, values, np.nan)
    return candidates


@dataclass(frozen=True)
class _Flat:
    """A column of per-trigger tuples flattened: the items, their trigger row, their position in
    the tuple (0-based) and each trigger's tuple length."""

    items: np.ndarray
    group: np.ndarray
    order: np.ndarray
    sizes: np.ndarray


def _flatten(column: pd.Series | np.ndarray) -> _Flat:
    sizes = np.asarray([len(values) for values in column], dtype=np.int64)
    items = np.asarray([item for values in column for item in values], dtype=object)
    starts = np.cumsum(sizes) - sizes
    order = np.arange(len(items)) - np.repeat(starts, sizes)
    return _Flat(items=items, group=np.repeat(np.arange(len(sizes)), sizes), order=order, sizes=sizes)


def _pair_lookup(
    wanted: tuple[np.ndarray, np.ndarray],
    table: tuple[np.ndarray, np.ndarray],
    values: np.ndarray,
    missing: float,
) -> np.ndarray:
    """For each wanted (row, code) pair, the value of its first occurrence in the table's (row,
    code) pairs, ``missing`` where absent. Rows and codes are non-negative ints; code -1 never matches."""
    (w_row, w_code), (t_row, t_code) = wanted, table
    width = int(max(w_code.max(initial=-1), t_code.max(initial=-1))) + 1
    t_valid = t_code >= 0
    keys, first = np.unique(t_row[t_valid].astype(np.int64) * width + t_code[t_valid], return_index=True)
    found = np.full(len(w_row), missing, dtype=float)
    if len(keys) == 0:
        return found
    w_key = w_row.astype(np.int64) * width + w_code
    at = np.minimum(np.searchsorted(keys, w_key), len(keys) - 1)
    hit = (keys[at] == w_key) & (w_code >= 0)
    found[hit] = np.asarray(values, dtype=float)[t_valid][first[at[hit]]]
    return found


def _trigger_positions(candidates: pd.DataFrame | Mapping[str, np.ndarray], triggers: Triggers) -> np.ndarray:
    """The row of each candidate's trigger in ``triggers``: the ``trigger_row`` column of the
    candidate generator's columns, made for this very table, or found by trigger id."""
    if "trigger_row" in candidates:
        return np.asarray(candidates["trigger_row"], dtype=np.int64)
    positions: np.ndarray = pd.Index(triggers["trigger_id"]).get_indexer(_column(candidates, "trigger_id"))
    if (positions < 0).any():
        raise ValueError("candidates refer to triggers that are not in the trigger table")
    return positions


def _utc(times: pd.Series) -> pd.Series:
    """Timestamps as UTC nanoseconds (index lookups need one unit)."""
    return pd.to_datetime(times, utc=True).dt.as_unit("ns").reset_index(drop=True)


def _per_candidate(times: pd.Series, t_pos: np.ndarray) -> pd.DatetimeIndex:
    """A per-trigger timestamp column repeated for each candidate row (kept as datetime64: a tz-aware
    ``to_numpy`` would build one Timestamp object per row)."""
    return pd.DatetimeIndex(times.array.take(t_pos))


def _take(values: np.ndarray | None, positions: np.ndarray) -> np.ndarray:
    """values[positions], NaN where the position is -1 (not found) or the column is absent (None)."""
    if values is None or len(values) == 0:
        return np.full(len(positions), np.nan)
    return np.where(positions >= 0, values[np.maximum(positions, 0)], np.nan)


def _per_row(values: np.ndarray | None, rows: int) -> np.ndarray:
    """A gathered column as floats, all NaN when it is absent (None)."""
    return np.full(rows, np.nan) if values is None else np.asarray(values, dtype=float)


def _numeric_columns(frame: pd.DataFrame | Mapping[str, np.ndarray], names: Iterable[str]) -> dict[str, np.ndarray]:
    """The columns of ``frame`` among ``names`` as floats (NaN where missing or not a number);
    absent columns are left out. A frame of floats only (the product cache's) gives views of its
    one block; any other, column by column: selecting them as one block first costs more."""
    present = [name for name in dict.fromkeys(names) if name in frame]
    if isinstance(frame, pd.DataFrame) and all(dtype.kind == "f" for dtype in frame.dtypes):
        block = frame.to_numpy(dtype=float)
        return dict(zip(present, block.T[frame.columns.get_indexer(present)], strict=True))
    columns: dict[str, np.ndarray] = {}
    for name in present:
        values = frame[name]
        if values.dtype.kind in "biuf":  # numbers need no pd.to_numeric
            columns[name] = np.asarray(values, dtype=float)
        else:  # text or timestamps
            columns[name] = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return columns


def _column(candidates: pd.DataFrame | Mapping[str, np.ndarray], name: str, dtype: type | None = None) -> np.ndarray:
    """A candidate column as an array; candidates are a DataFrame or a mapping of column arrays (the
    serving path skips building a DataFrame)."""
    return np.asarray(candidates[name], dtype=dtype)


def _time_feature(values: Mapping[str, np.ndarray], derived: str, now_s: np.ndarray) -> np.ndarray:
    """A derived day count (``features.derived.TIME_FEATURES``) per row of ``values`` (numeric
    columns), from its stored timestamp at lookup times ``now_s``; the stored count itself when the
    timestamp is absent (NaN when both are)."""
    stamp = TIME_FEATURES[derived]
    if stamp in values:
        return days_since(now_s, values[stamp])
    return values[derived] if derived in values else np.full(len(now_s), np.nan)


def _affinity_shares(raw: object, cache: dict[str, dict[str, float]]) -> dict[str, float]:
    """The ``category_affinity`` JSON (category -> spend share) parsed once per distinct string."""
    if not isinstance(raw, str):
        return {}
    shares = cache.get(raw)
    if shares is None:
        shares = cache[raw] = json.loads(raw) if raw else {}
    return shares
