"""Candidate generation: a hundred or so cross-sell and up-sell offers per trigger, with reasons and
pair features, for a ranker to order.

Seeds are the trigger basket (weight 1) and the customer's most recent earlier purchases (weight
``history_weight``, at most ``max_history_seeds``). Each source of the index (see
``models.index``) scores items by summing its neighbour scores over the seeds; ``popularity``
(recent buyers) scores every offerable item, so new customers and unknown items still get offers.
Sources are fused by weighted reciprocal rank (``weight / (rrf_k + rank)``, a source ranking
items by score, ties by item position), and the ``n_candidates`` best items are kept. That core
runs compiled, one trigger at a time, in ``models.fusion``; this module prepares its inputs and
turns its output into candidate rows.

Never offered: the basket, anything the customer bought or returned before, service codes, items
not sold within the index's ``active_days`` or returned too often (``offerable`` False).

Offer type: ``up_sell`` when the item is a better version of a basket item: the same category,
a median price ``upsell_min_ratio``..``upsell_max_ratio`` times that item's, and a step up
(``features.catalog.upgrade_step``: larger, a bigger pack, premium, more included, or the same
item line at ``min_tier_ratio`` times the price); else ``cross_sell``. The reason names the seed
item. A pairing ("Often bought with", "Customers who bought ... also bought", "Often bought soon
after") is claimed only for an association beyond popularity: at least the index's
``min_support`` shared orders and a lift of ``min_claim_lift``; a bestseller that is merely
bought with everything gets the popularity reason, and so does a pair that few shared orders make
look associated by chance (``bought_together``), or whose kinds do not back it (``_kinds_back``:
not the same kind, kinds not bought together beyond doubt, and no range word in common). Each row carries ``source`` (the source
contributing most to its fused score) and ``source_rank`` (its rank in that source).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numba
import numpy as np
import pandas as pd
from scipy import sparse, special

from features.catalog import FAMILY_PRICE_TOLERANCE, name_profile, range_words, size_words, upgrade_step
from models.fusion import POPULARITY_SOURCE, FusedCandidates, NeighbourTables, fuse, popularity_ranking, ragged
from models.index import SOURCES, CandidateIndex
from models.reasons import EARLIER_SUFFIX, PAIRING_SOURCES, POPULARITY, REASONS

ALL_SOURCES = (*SOURCES, POPULARITY)
# the sources whose reason claims an association with the seed item: each needs a lift to say so
CLAIMING_SOURCES = ("basket", "followup", "itemknn", "category")
CANDIDATE_COLUMNS = (
    "trigger_id",
    "product_id",
    "candidate_rank",
    "fused_score",
    "offer_type",
    "source",
    "source_rank",
    "reason",
    "upsell_step",
    "seed_product_id",
    "co_count",
    "confidence",
    "lift",
    "price_ratio",
    "same_category",
    *(f"score_{s}" for s in ALL_SOURCES),
    *(f"rank_{s}" for s in ALL_SOURCES),
    "median_price",
    "recent_customers",
    "customers",
    "return_rate",
)
LOOKUP_BY_HASH_TABLE = 500  # ids beyond which a pandas index lookup beats a dict lookup per id
# a trigger table: a DataFrame, or its columns as arrays (the serving path builds no frame); columns
# trigger_id, basket and history (tuples of product ids) and optionally returned; the ranker's
# features also read at and window_cutoff (timestamps: a datetime Series or DatetimeIndex)
Triggers: TypeAlias = pd.DataFrame | Mapping[str, Any]


def trigger_count(triggers: Triggers) -> int:
    """The rows of a trigger table (a mapping's ``len`` counts its columns)."""
    return len(triggers["trigger_id"])


@dataclass(frozen=True)
class CandidateConfig:
    """Settings of candidate generation: list size, seeds, source weights, fusion."""

    n_candidates: int = 200
    sources: tuple[str, ...] = ALL_SOURCES
    basket_weight: float = 1.0
    followup_weight: float = 1.0
    itemknn_weight: float = 1.0
    category_weight: float = 0.5
    upsell_weight: float = 0.5
    popularity_weight: float = 0.5
    history_weight: float = 0.5
    max_history_seeds: int = 50
    rrf_k: float = 20.0
    exclude_returned: bool = True
    # lift = P(item | seed) / P(item): 2 means bought with the seed twice as often as with any order
    min_claim_lift: float = 2.0
    # beyond doubt: so many shared orders come at that lift by chance at most this often
    max_claim_chance: float = 0.001
    # the same item line with no named step is an up-sell only this much dearer (a higher price
    # tier); off by default: in a catalog of designs a dearer design is another design, not better
    min_tier_ratio: float = float("inf")

    def weight(self, source: str) -> float:
        """The fusion weight of a source."""
        return float(getattr(self, f"{source}_weight"))


class CandidateGenerator:
    """Candidates from a ``CandidateIndex`` for one purchase or for a table of triggers."""

    def __init__(self, index: CandidateIndex, config: CandidateConfig | None = None) -> None:
        self.index = index
        self.config = config or CandidateConfig()
        unknown = set(self.config.sources) - set(ALL_SOURCES)
        if unknown:
            raise ValueError(f"unknown candidate sources {sorted(unknown)}; known: {list(ALL_SOURCES)}")
        products = index.products
        self._offerable = products["offerable"].to_numpy(dtype=bool)
        popularity = products["recent_customers"].to_numpy(dtype=np.float64) + 0.01 * products["customers"].to_numpy()
        popularity = np.where(self._offerable, popularity, 0.0)
        self._popularity = popularity
        self._popularity_rank, self._popularity_order = popularity_ranking(popularity)
        self._names = products["name"].fillna(products["product_id"]).to_numpy(dtype=object)
        self.category_codes: tuple[np.ndarray, pd.Index] = pd.factorize(products["category"])
        # each code's category, None last: code -1 (no category) takes it
        self.category_labels = np.asarray([*self.category_codes[1], None], dtype=object)
        self._category = self.category_codes[0]
        self._kind_pair_keys = self._kind_keys(index.kind_pairs)
        self.median_price = products["median_price"].to_numpy(dtype=np.float64)
        sizes = [size_words(name) for name in products["name"]]
        self._size_code = pd.factorize(pd.Series(sizes, dtype=object))[0]
        heads = products["head"] if "head" in products else pd.Series(None, index=products.index, dtype=object)
        self._profiles = [
            name_profile(name, head if isinstance(head, str) else None)
            for name, head in zip(products["name"], heads, strict=True)
        ]
        self._head = pd.factorize(pd.Series([p.head or None for p in self._profiles], dtype=object))[0]
        self._range_words = [
            range_words(name, p.head) for name, p in zip(products["name"], self._profiles, strict=True)
        ]
        self._steps: dict[tuple[int, int], str | None] = {}  # (seed, item) -> upgrade_step, as asked
        self._orders = products["orders"].to_numpy(dtype=np.float64)
        self._product_ids = products["product_id"].to_numpy()
        self.product_index = pd.Index(self._product_ids)  # product id -> item position, hashed once
        self._item_columns = {
            c: products[c].to_numpy() for c in ("median_price", "recent_customers", "customers", "return_rate")
        }
        self._cooccurrence = sorted_csr(index.cooccurrence)
        neighbour_sources = [s for s in self.config.sources if s != POPULARITY]
        self._tables = NeighbourTables.stack([index.neighbours[s] for s in neighbour_sources], index.size)
        self._source_kind = np.asarray(
            [neighbour_sources.index(s) if s != POPULARITY else POPULARITY_SOURCE for s in self.config.sources],
            dtype=np.int64,
        )
        self._source_weight = np.asarray([self.config.weight(s) for s in self.config.sources], dtype=np.float64)
        self._basket_seeds_only = np.asarray([s == "upsell" for s in self.config.sources], dtype=bool)
        # compile the kernels now, not in a batch
        self.candidate_columns(pd.DataFrame({"trigger_id": [], "basket": [], "history": []}))
        self._cooccurrence_at(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def positions(self, product_ids: np.ndarray) -> np.ndarray:
        """Each product's position in this generator's index (``product_index``), -1 if unknown."""
        if len(product_ids) > LOOKUP_BY_HASH_TABLE:  # pandas' hash table, where a dict lookup per id costs more
            return np.asarray(self.product_index.get_indexer(product_ids), dtype=np.int64)
        position = self.index.position
        return np.fromiter((position.get(p, -1) for p in product_ids), dtype=np.int64, count=len(product_ids))

    def candidates_for(
        self,
        customer_id: str | None,
        basket: Sequence[str],
        at: pd.Timestamp,
        history: Iterable[str] = (),
        returned: Iterable[str] = (),
    ) -> pd.DataFrame:
        """Candidates after one purchase. ``history`` is what the customer bought before (most
        recent first if ordered; a set is seeded in popularity order)."""
        if isinstance(history, (set, frozenset)):
            unknown_last = self.index.size + 1
            history = sorted(
                history,
                key=lambda p: (
                    self._popularity_rank[self.index.position[p]] if p in self.index.position else unknown_last,
                    p,
                ),
            )
        trigger = pd.DataFrame(
            {
                "trigger_id": [f"{customer_id or 'anonymous'}@{pd.Timestamp(at).isoformat()}"],
                "customer_id": [customer_id],
                "at": [pd.Timestamp(at)],
                "basket": [tuple(basket)],
                "history": [tuple(history)],
                "returned": [tuple(returned)],
            }
        )
        return self.candidates_for_triggers(trigger)

    def candidates_for_triggers(self, triggers: pd.DataFrame) -> pd.DataFrame:
        """Candidates for every row of a trigger table (columns trigger_id, basket, history and
        optionally returned), one row per (trigger, candidate), best first within a trigger."""
        return pd.DataFrame(self.candidate_columns(triggers), columns=list(CANDIDATE_COLUMNS))

    def candidate_columns(self, triggers: Triggers, threads: int = 0, limit: int = 0) -> dict[str, np.ndarray]:
        """``candidates_for_triggers`` as column arrays (``CANDIDATE_COLUMNS``), for callers that
        need no DataFrame: building one costs more than a small serving batch's candidates.
        ``threads``: parallel runs of the fusion on a large batch (0: one per core); ``limit``:
        at most this many per trigger, the first of the full list (0: ``n_candidates``). One more
        column, ``item``, is each candidate's position in this generator's index (``product_index``),
        so that callers look items up without hashing product ids again, and ``trigger_row``, each
        candidate's row in ``triggers`` (callers need not hash trigger ids either)."""
        cfg, position = self.config, self.index.position
        take = min(limit or cfg.n_candidates, self.index.size)
        basket_items = [[position[p] for p in b if p in position] for b in triggers["basket"]]
        history_items = [[position[p] for p in h if p in position] for h in triggers["history"]]
        returned = (
            triggers["returned"] if "returned" in triggers and cfg.exclude_returned else [()] * trigger_count(triggers)
        )
        returned_items = [[position[p] for p in r if p in position] for r in returned]
        kept = fuse(
            self.index.size,
            self._offerable,
            ragged(basket_items),
            ragged(history_items),
            ragged(returned_items),
            self._tables,
            self._source_kind,
            self._source_weight,
            self._basket_seeds_only,
            self._popularity,
            self._popularity_rank,
            self._popularity_order,
            cfg.history_weight,
            cfg.max_history_seeds,
            cfg.rrf_k,
            take,
            threads,
        )
        if len(kept.item) == 0:
            positions = {c: np.empty(0, dtype=np.int64) for c in ("item", "trigger_row")}
            return {**{c: np.empty(0, dtype=object) for c in CANDIDATE_COLUMNS}, **positions}
        return {**self._rows(triggers, kept, basket_items), "item": kept.item, "trigger_row": kept.trigger}

    def _rows(self, triggers: Triggers, kept: FusedCandidates, basket_items: list[list[int]]) -> dict[str, np.ndarray]:
        cfg, sources = self.config, list(self.config.sources)
        t_idx, items = kept.trigger, kept.item
        contributions = np.where(kept.score > 0, self._source_weight / (cfg.rrf_k + kept.source_rank), 0.0)
        chosen = contributions.argmax(axis=1)
        rows = np.arange(len(items))
        source = np.asarray(sources, dtype=object)[chosen]
        source_rank = kept.source_rank[rows, chosen]
        seed = kept.best_seed[rows, chosen]
        if "basket" in sources:  # a popularity pick still gets pair features against its best basket partner
            seed = np.where(seed < 0, kept.best_seed[:, sources.index("basket")], seed)

        upgraded = self._upgraded_item(t_idx, items, basket_items)
        up_sell = upgraded >= 0
        variant_of = np.where(up_sell, -1, self._variant_of(t_idx, items, basket_items))
        seed = np.where(up_sell, upgraded, np.where(variant_of >= 0, variant_of, seed))
        offer_type = np.where(up_sell, "up_sell", "cross_sell")
        step = np.full(len(items), None, dtype=object)  # not an up-sell: no step
        step[up_sell] = self._upgrade_steps(items[up_sell], upgraded[up_sell])

        frame: dict[str, np.ndarray] = {  # columns, returned as arrays (no DataFrame: see candidate_columns)
            "trigger_id": np.asarray(triggers["trigger_id"])[t_idx],
            "product_id": self._product_ids[items],
            "candidate_rank": kept.rank,
            "fused_score": kept.fused,
            "offer_type": offer_type,
            "source": source,
            "source_rank": source_rank,
        }
        has_seed = seed >= 0
        seed_safe = np.where(has_seed, seed, 0)
        co_count = self._cooccurrence_at(seed_safe, items) * has_seed
        lift = co_count * self.index.orders / np.maximum(self._orders[seed_safe] * self._orders[items], 1)
        kinds_together = self._kinds_together(seed_safe, items)
        claimed = bought_together(co_count, self._orders[seed_safe], self._orders[items], self.index, cfg)
        claimed &= self._kinds_back(claimed, seed_safe, items, kinds_together)
        basket_keys = np.asarray(
            [t * self.index.size + i for t, b in enumerate(basket_items) for i in b], dtype=np.int64
        )
        earlier = has_seed & ~np.isin(t_idx.astype(np.int64) * self.index.size + seed_safe, basket_keys)
        # another design of the seed an earlier purchase gave (same kind, head noun and size)
        kind, head = self._category, self._head
        design_of_seed = (
            has_seed
            & ~up_sell
            & (items != seed_safe)
            & (kind[items] >= 0)
            & (kind[items] == kind[seed_safe])
            & (head[seed_safe] >= 0)
            & (head[items] == head[seed_safe])
            & (self._size_code[items] == self._size_code[seed_safe])
        )
        variant = (variant_of >= 0) | design_of_seed
        goes_with = self._goes_with(claimed & ~earlier & ~up_sell & ~variant, seed_safe, items, kinds_together)
        frame["reason"] = _reasons(
            sources,
            chosen,
            step,
            variant,
            goes_with,
            has_seed,
            seed_safe,
            items,
            self._names,
            claimed,
            earlier,
        )
        frame["upsell_step"] = step
        # numpy's stubs read where(c, x, None) as the one-argument form (a tuple of index arrays)
        frame["seed_product_id"] = np.where(has_seed, self._product_ids[seed_safe], None)  # type: ignore[assignment]
        frame["co_count"] = co_count
        frame["confidence"] = co_count / np.maximum(self._orders[seed_safe], 1)
        frame["lift"] = lift
        frame["price_ratio"] = np.where(has_seed, self.median_price[items] / self.median_price[seed_safe], np.nan)
        frame["same_category"] = (
            has_seed & (self._category[items] >= 0) & (self._category[items] == self._category[seed_safe])
        )
        for s in ALL_SOURCES:
            at = sources.index(s) if s in sources else None
            # an unconfigured source's column is a scalar here, broadcast to an array on return
            frame[f"score_{s}"] = kept.score[:, at] if at is not None else 0.0  # type: ignore[assignment]
            frame[f"rank_{s}"] = kept.source_rank[:, at] if at is not None else 0  # type: ignore[assignment]
        for column, values in self._item_columns.items():
            frame[column] = values[items]
        return {
            c: np.broadcast_to(frame[c], len(items)) if np.ndim(frame[c]) == 0 else frame[c] for c in CANDIDATE_COLUMNS
        }

    def _kind_keys(self, kind_pairs: pd.DataFrame | None) -> np.ndarray | None:
        """The index's kinds bought together as sorted ``kind * kinds + other`` codes (None: the
        index has no such table, so no claim is held back for its kinds)."""
        if kind_pairs is None:
            return None
        categories = self.category_codes[1]
        kind = categories.get_indexer(kind_pairs["kind"])
        other = categories.get_indexer(kind_pairs["other"])
        known = (kind >= 0) & (other >= 0)
        return np.unique(kind[known].astype(np.int64) * len(categories) + other[known])

    def _kinds_together(self, seeds: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per (seed, item) row, whether their kinds are bought together beyond doubt (the index's
        ``kind_pairs``: cake cases with cake stands); all True when the index has no such table."""
        if self._kind_pair_keys is None:
            return np.ones(len(items), dtype=bool)
        kind_seed, kind_item = self._category[seeds], self._category[items]
        keys = kind_seed.astype(np.int64) * len(self.category_codes[1]) + kind_item
        known = self._kind_pair_keys  # sorted: a binary search per row, where np.isin sorts the table each call
        at = np.minimum(np.searchsorted(known, keys), max(len(known) - 1, 0))
        listed = known[at] == keys if len(known) else np.zeros(len(keys), dtype=bool)
        together: np.ndarray = (kind_seed >= 0) & (kind_item >= 0) & listed
        return together

    def _kinds_back(
        self, rows: np.ndarray, seeds: np.ndarray, items: np.ndarray, kinds_together: np.ndarray
    ) -> np.ndarray:
        """Per candidate row (``rows``: the item pairings bought together beyond doubt), whether
        their kinds back the pairing: the same kind, kinds bought together beyond doubt
        (``kinds_together``, from `_kinds_together`), or a range word in common (the REGENCY sugar
        bowl with the REGENCY teacup). Washing-up gloves bought with camembert tins, kinds that
        meet no more often than chance allows, claim nothing."""
        result = rows.copy()
        if self._kind_pair_keys is None:
            return result
        kind_seed, kind_item = self._category[seeds], self._category[items]
        same = (kind_seed >= 0) & (kind_seed == kind_item)
        rest = np.flatnonzero(rows & ~same & ~kinds_together)
        result[rest] = self._share_range_word(seeds[rest], items[rest])
        return result

    def _goes_with(
        self, rows: np.ndarray, seeds: np.ndarray, items: np.ndarray, kinds_together: np.ndarray
    ) -> np.ndarray:
        """Per candidate row (``rows``: the claimed pairings with a basket item to look at), whether
        the item completes the seed's range: another kind than the seed with another head noun,
        kinds bought together beyond doubt (``kinds_together``), and a range or theme word in
        common besides their head nouns (``features.catalog.range_words``): the REGENCY sugar bowl
        for the REGENCY teacup, the 50'S CHRISTMAS crackers for the 50'S CHRISTMAS paper chains;
        not the PAISLEY PARK jumbo bag for the PAISLEY PARK lunch bag (another bag), nor a theme's
        cushion for its doll (kinds that are not bought together)."""
        result = np.zeros(len(items), dtype=bool)
        head_item, head_seed = self._head[items], self._head[seeds]
        same_head = (head_item >= 0) & (head_item == head_seed)
        candidates = rows & (self._category[items] != self._category[seeds]) & ~same_head
        at = np.flatnonzero(candidates & kinds_together)
        result[at] = self._share_range_word(seeds[at], items[at])
        return result

    def _share_range_word(self, seeds: np.ndarray, items: np.ndarray) -> list[bool]:
        """Per (seed, item) pair, whether their names share a range or theme word (`range_words`)."""
        words = self._range_words
        return [bool(words[s] & words[i]) for s, i in zip(seeds.tolist(), items.tolist(), strict=True)]

    def _cooccurrence_at(self, seeds: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Co-occurrence counts of (seed, item) pairs, 0 where absent (a binary search in the
        seed's row: scipy's fancy indexing of many single cells is slow)."""
        indptr, indices, data = self._cooccurrence
        return csr_values(indptr, indices, data, seeds.astype(np.int64), items.astype(np.int64))

    def _upgraded_item(self, t_idx: np.ndarray, items: np.ndarray, basket_items: list[list[int]]) -> np.ndarray:
        """Per candidate row, the basket item it upgrades, or -1: same kind, median price within the
        up-sell band, and a better version of it (`features.catalog.upgrade_step`: a larger size,
        a bigger pack, a premium line or more included, or the same item line priced at
        ``min_tier_ratio`` times or more). The priciest such basket item; equal prices: the first."""
        lo, hi = self.index.config.upsell_min_ratio, self.index.config.upsell_max_ratio
        tier = self.config.min_tier_ratio

        def upgrades(ratio: np.ndarray, item: np.ndarray, seed: np.ndarray) -> np.ndarray:
            eligible: np.ndarray = (
                (ratio >= lo)
                & (ratio <= hi)
                & (self._head[item] == self._head[seed])
                & (self._head[seed] >= 0)
                & (item != seed)
            )
            steps = self._upgrade_steps(item[eligible], seed[eligible])
            eligible[eligible] = (steps != None) & ((steps != "") | (ratio[eligible] >= tier))  # noqa: E711
            return eligible

        return self._basket_match(t_idx, items, basket_items, upgrades)

    def _upgrade_steps(self, items: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """`features.catalog.upgrade_step` of each (seed, item) pair, as an object array (None: no upgrade)."""
        steps, profiles = self._steps, self._profiles
        out = np.empty(len(items), dtype=object)
        for k, (item, seed) in enumerate(zip(items.tolist(), seeds.tolist(), strict=True)):
            key = (seed, item)
            if key not in steps:
                steps[key] = upgrade_step(profiles[seed], profiles[item])
            out[k] = steps[key]
        return out

    def _variant_of(self, t_idx: np.ndarray, items: np.ndarray, basket_items: list[list[int]]) -> np.ndarray:
        """Per candidate row, the basket item it is another design of, or -1: same kind, same size
        words, and either median prices within the family tolerance (`features.catalog.same_family`)
        or the same head noun at another price (a dearer design is another design, not an upgrade)."""
        tolerance = np.log1p(FAMILY_PRICE_TOLERANCE)
        size, head = self._size_code, self._head
        return self._basket_match(
            t_idx,
            items,
            basket_items,
            lambda ratio, item, seed: (
                ((np.abs(np.log(ratio)) <= tolerance) | ((head[item] == head[seed]) & (head[seed] >= 0)))
                & (size[item] == size[seed])
                & (item != seed)
            ),
        )

    def _basket_match(
        self,
        t_idx: np.ndarray,
        items: np.ndarray,
        basket_items: list[list[int]],
        accept: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """Per candidate row, the first basket item of its kind (priciest first; equal prices: the
        first in the basket) for which ``accept(price ratio, item, basket item)`` holds, or -1."""
        categories = int(self._category.max(initial=-1)) + 1
        basket_t = np.repeat(np.arange(len(basket_items)), [len(b) for b in basket_items])
        basket_i = np.asarray([i for b in basket_items for i in b], dtype=np.int64)
        known = self._category[basket_i] >= 0
        basket_t, basket_i = basket_t[known], basket_i[known]
        # basket items grouped by (trigger, category), priciest first within a group
        basket_key = basket_t * categories + self._category[basket_i]
        order = np.lexsort((-self.median_price[basket_i], basket_key))
        basket_key, basket_i = basket_key[order], basket_i[order]
        matched = np.full(len(items), -1, dtype=np.int64)
        row_key = np.where(self._category[items] >= 0, t_idx * categories + self._category[items], -1)
        starts = np.searchsorted(basket_key, row_key, side="left")
        lengths = np.where(row_key >= 0, np.searchsorted(basket_key, row_key, side="right") - starts, 0)
        pair_row = np.repeat(np.arange(len(items)), lengths)
        pair_at = np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        seed = basket_i[pair_at]
        item = items[pair_row]
        eligible = accept(self.median_price[item] / self.median_price[seed], item, seed)
        rows, first = np.unique(pair_row[eligible], return_index=True)  # the first eligible pair of each row
        matched[rows] = seed[eligible][first]
        return matched


def bought_together(
    co_count: np.ndarray,
    orders_a: np.ndarray,
    orders_b: np.ndarray,
    index: CandidateIndex,
    config: CandidateConfig,
) -> np.ndarray:
    """Per pair of items (``co_count`` shared orders of items in ``orders_a`` and ``orders_b``
    orders), whether they are bought together beyond popularity and beyond chance, as a claim
    such as "Often bought with" needs: at least the index's ``min_support`` shared orders, a lift
    of ``min_claim_lift``, and a chance of at most ``max_claim_chance`` to share so many orders
    if they were bought together only ``min_claim_lift`` times as often as independent items
    (Poisson tail): the lift must be there beyond doubt, so that neither two rare items that met
    twice nor two bestsellers that share many orders at a lift just above it make a claim."""
    co_count = np.asarray(co_count, dtype=np.float64)
    expected = np.asarray(orders_a, dtype=np.float64) * np.asarray(orders_b, dtype=np.float64) / max(index.orders, 1)
    lift = co_count / np.maximum(expected, 1.0 / max(index.orders, 1))
    together: np.ndarray = (co_count >= index.config.min_support) & (lift >= config.min_claim_lift)
    # P(at least co_count shared orders) where min_claim_lift times the independent count is expected,
    # computed only for the pairs that pass the rest (most pairs of a basket never met)
    at = np.flatnonzero(together)
    chance = special.pdtrc(np.maximum(co_count[at] - 1, 0), expected[at] * config.min_claim_lift)
    together[at] = chance <= config.max_claim_chance
    return together


def offer_types(pairs: pd.DataFrame, triggers: pd.DataFrame, index: CandidateIndex) -> pd.Series:
    """``up_sell`` or ``cross_sell`` for each (trigger_id, product_id) row of ``pairs``, by the same
    rule candidates use (same category as a basket item, median price within the up-sell band).
    Items unknown to the index are ``cross_sell``."""
    generator = CandidateGenerator(index, CandidateConfig(sources=(POPULARITY,)))
    t_lookup = pd.Series(np.arange(len(triggers)), index=triggers["trigger_id"])
    t_idx = t_lookup.reindex(pairs["trigger_id"]).to_numpy()
    items = pd.Series(pairs["product_id"].to_numpy()).map(index.position)
    known = items.notna().to_numpy() & ~np.isnan(t_idx.astype(float))
    basket_items = [[index.position[p] for p in b if p in index.position] for b in triggers["basket"]]
    result = np.full(len(pairs), "cross_sell", dtype=object)
    upgraded = generator._upgraded_item(
        t_idx[known].astype(np.int64), items[known].to_numpy(dtype=np.int64), basket_items
    )
    result[np.flatnonzero(known)[upgraded >= 0]] = "up_sell"
    return pd.Series(result, index=pairs.index, name="offer_type")


def sorted_csr(matrix: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A CSR matrix's (indptr, indices, data), duplicates summed and each row's columns sorted."""
    matrix = matrix.tocsr().copy()
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64), matrix.data


@numba.njit(cache=True, nogil=True)
def csr_values(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: np.ndarray, columns: np.ndarray
) -> np.ndarray:
    """matrix[rows[k], columns[k]] for each k, 0 where the cell is empty (rows' columns sorted)."""
    out = np.zeros(len(rows), dtype=data.dtype)
    for k in range(len(rows)):
        lo, hi = indptr[rows[k]], indptr[rows[k] + 1]
        at = lo + np.searchsorted(indices[lo:hi], columns[k])
        if at < hi and indices[at] == columns[k]:
            out[k] = data[at]
    return out


def _reasons(
    sources: Sequence[str],
    chosen: np.ndarray,
    step: np.ndarray,
    variant: np.ndarray,
    goes_with: np.ndarray,
    has_seed: np.ndarray,
    seeds: np.ndarray,
    items: np.ndarray,
    names: np.ndarray,
    claimed: np.ndarray,
    earlier: np.ndarray,
) -> np.ndarray:
    """The reason text of each row (``chosen``: the position of its winning source in ``sources``),
    formatted once per distinct (kind, seed, item). An up-sell (``step`` not None: its kind of step,
    "" for a higher price tier) says what is better; a ``variant`` says it is another design; an
    item that ``goes_with`` its basket seed (another kind of its range) says so; a
    row of a pairing source (``CLAIMING_SOURCES``) whose order-level association with its seed is
    not ``claimed``, and an item of the up-sell source that is no upgrade, get the popularity
    reason; a
    pairing with a seed the customer bought ``earlier`` (not in this basket) says so. Kinds are integer codes: sorting the rows' source names had cost half of the candidate columns."""
    extra = [
        "upsell",
        "upsell_larger",
        "upsell_pack",
        "upsell_premium",
        "upsell_extras",
        "variant",
        "complement",
        POPULARITY,
    ]
    kinds = [*sources, *extra]  # a source's position, then the kinds that override it
    code = {name: len(sources) + i for i, name in enumerate(extra)}
    up_sell = step != None  # noqa: E711  (an object array: "" is a step too)
    by_upsell = np.asarray([s == "upsell" for s in sources], dtype=bool)[chosen]
    by_popularity = np.asarray([s == POPULARITY for s in sources], dtype=bool)[chosen]
    unclaimed = np.asarray([s in CLAIMING_SOURCES for s in sources], dtype=bool)[chosen] & ~claimed
    step_code = np.select(
        [step == "larger", step == "pack", step == "premium", step == "extras"],
        [code["upsell_larger"], code["upsell_pack"], code["upsell_premium"], code["upsell_extras"]],
        code["upsell"],
    )
    kind = np.where(
        up_sell,
        step_code,
        np.where(
            variant,
            code["variant"],
            np.where(
                goes_with,
                code["complement"],
                np.where(by_upsell | by_popularity | ~has_seed | unclaimed, code[POPULARITY], chosen),
            ),
        ),
    )
    popularity = code[POPULARITY]
    names_item = (kind >= code["upsell"]) & (kind <= code["upsell_extras"])  # the up-sell reasons name the item too
    n = int(max(seeds.max(initial=0), items.max(initial=0))) + 1
    key = (kind.astype(np.int64) * (n + 1) + np.where(kind == popularity, n, seeds)) * (n + 1) + np.where(
        names_item, items, n
    )
    pairing = np.isin(kind, [*(i for i, s in enumerate(sources) if s in PAIRING_SOURCES), code["variant"]])
    key = key * 2 + (earlier & pairing)
    unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    texts = np.empty(len(unique), dtype=object)
    for slot, row in enumerate(first.tolist()):
        text = REASONS[kinds[kind[row]]].format(seed=names[seeds[row]], item=names[items[row]])
        texts[slot] = text + EARLIER_SUFFIX if earlier[row] and pairing[row] else text
    return texts[inverse]
