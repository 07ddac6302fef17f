"""Rank candidates for a batch of purchases with the champion and online features.

The same code path as training and batch scoring: candidates from the champion's own candidate
index (`models.features.candidate_context_columns`), features computed by
`models.features.aligned_feature_matrix`, the core of training's `feature_matrix` (here from the
Feast online store instead of the offline store, gathered per trigger and per candidate without a
frame: product features are the current ones, by product id), one `predict` call for the whole
batch.

Product features change slowly: they are cached for `ttl_s` and a product is dropped from the
cache as soon as a purchase of it passes through (its statistics just changed).

`propose_bundles` proposes each ranked event's "complete the set" bundle from the champion's index
(`models.bundles`), for the rules to offer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.online import OnlineFeatureReader, object_column
from models.bundles import Bundle, BundlePicker
from models.champion import Champion
from models.features import aligned_feature_matrix, candidate_context_columns, customer_columns
from models.ranking import best_rows, score_matrix, trigger_codes
from models.reasons import GOES_WITH_PREFIX, VARIANT_PREFIX
from services.offers.rules import RankedCandidate
from xsell.events import PurchaseEvent
from xsell.offers import OfferType


class ProductFeatureCache:
    """Online product features with a time-to-live and explicit invalidation, kept as a float
    matrix (a row per product): a batch's product values are one gather from it, not a frame
    built from hundreds of dicts.

    An invalidated product is re-read once its row is ``refresh_s`` old: a stream of purchases of
    the same products (a busy batch buys hundreds) costs at most one re-read per product and
    ``refresh_s`` instead of one per batch. Values that are not numbers (none of the features the
    model reads) are kept as NaN."""

    def __init__(self, reader: OnlineFeatureReader, ttl_s: float = 300.0, refresh_s: float = 5.0) -> None:
        self.reader = reader
        self.ttl_s = ttl_s
        self.refresh_s = min(refresh_s, ttl_s)
        self.names = list(reader.names["product_stats_fv"])
        self._row: dict[str, int] = {}  # product id -> row of the matrix
        self._values = np.empty((64, len(self.names)))
        self._read: dict[str, tuple[float, float]] = {}  # product id -> (read at, stale after)

    def invalidate(self, product_ids: Sequence[str]) -> None:
        """These products were just bought: re-read each once its row is ``refresh_s`` old."""
        for product_id in product_ids:
            read = self._read.get(product_id)
            if read is not None:
                self._read[product_id] = (read[0], min(read[1], read[0] + self.refresh_s))

    def columns(self, product_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Feature values by feature (``names``), a value per product id in order (an id may
        repeat); one online read for all that are missing or stale."""
        now = time.monotonic()
        read = self._read
        missing = [p for p in dict.fromkeys(product_ids) if p not in read or now > read[p][1]]
        for row in self.reader.products(missing) if missing else ():
            self._store(str(row["product_id"]), row, now)
        at = self._row
        rows = np.fromiter((at.get(p, -1) for p in product_ids), dtype=np.int64, count=len(product_ids))
        values = self._values[np.maximum(rows, 0)]
        values[rows < 0] = np.nan  # never read (an id the online store did not answer for)
        return dict(zip(self.names, values.T, strict=True))

    def _store(self, product_id: str, row: dict[str, object], now: float) -> None:
        at = self._row.setdefault(product_id, len(self._row))
        if at >= len(self._values):
            self._values = np.concatenate([self._values, np.empty_like(self._values)])
        self._values[at] = [_number(row.get(c)) for c in self.names]
        self._read[product_id] = (now, now + self.ttl_s)


def triggers_for(events: Sequence[PurchaseEvent], owned: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """One trigger per purchase event, as the columns of a trigger table (`models.candidates.Triggers`:
    the candidate generator and the features read them; a frame of a few rows costs more to build
    than the ranking's arithmetic) (``owned``: each customer's earlier products, most recent first,
    as training's history)."""
    at = (
        pd.DatetimeIndex([event.occurred_at for event in events]).tz_convert("UTC")
        if events
        else pd.DatetimeIndex([], tz="UTC")
    )
    return {
        "trigger_id": object_column([event.event_id for event in events]),
        "order_id": object_column([event.order_id for event in events]),
        "customer_id": object_column([event.customer_id for event in events]),
        "at": at,
        "window_cutoff": at,
        "basket": object_column([tuple(dict.fromkeys(line.product_id for line in event.lines)) for event in events]),
        "history": object_column([owned.get(event.customer_id or "", ()) for event in events]),
        "returned": object_column([() for _ in events]),
    }


def rank_batch(
    champion: Champion,
    events: Sequence[PurchaseEvent],
    owned: dict[str, tuple[str, ...]],
    reader: OnlineFeatureReader,
    products: ProductFeatureCache,
    keep: int = 20,
    predict_threads: int = 0,
    candidates_per_event: int = 0,
) -> dict[str, list[RankedCandidate]]:
    """The `keep` best candidates per event id and its best up-sell, best first, scored in one predict call
    (``predict_threads``: threads of the candidate fusion and of LightGBM, 0 for one per core;
    ``candidates_per_event``: how many of the fusion's best are scored, 0 for the champion's own
    candidate count)."""
    if not events:
        return {}
    triggers = triggers_for(events, owned)
    candidates = candidate_context_columns(champion.generator, triggers, predict_threads, candidates_per_event)
    if len(candidates["trigger_id"]) == 0:
        return {event.event_id: [] for event in events}
    customers = reader.columns("customer_stats_fv", [e.customer_id or "" for e in events])  # a value per trigger
    items, item_of_row = np.unique(candidates["item"], return_inverse=True)
    by_item = products.columns(champion.generator.product_index[items].tolist())
    product_values = {name: values[item_of_row] for name, values in by_item.items()}  # a value per candidate

    rows = aligned_feature_matrix(candidates, triggers, customer_columns(customers), product_values)
    scores = score_matrix(champion.booster, rows.values, threads=predict_threads)
    labels = rows.labels
    best = _kept_rows(candidates["trigger_row"], scores, labels["offer_type"], labels["reason"], keep)
    names = champion.product_names
    ranked: dict[str, list[RankedCandidate]] = {event.event_id: [] for event in events}
    ratios = np.asarray(candidates["price_ratio"], dtype=float)[best]
    seeds = np.asarray(candidates["seed_product_id"], dtype=object)[best]
    steps = np.asarray(candidates["upsell_step"], dtype=object)[best]
    best_products = labels["product_id"][best]
    prices = product_values["current_price"][best]
    for trigger_id, product_id, offer_type, reason, score, ratio, price, seed, step in zip(
        labels["trigger_id"][best].tolist(),
        best_products.tolist(),
        labels["offer_type"][best].tolist(),
        labels["reason"][best].tolist(),
        scores[best].tolist(),
        ratios.tolist(),
        prices.tolist(),
        seeds.tolist(),
        steps.tolist(),
        strict=True,
    ):
        ranked[str(trigger_id)].append(
            RankedCandidate(
                product_id=str(product_id),
                offer_type=OfferType(offer_type),
                score=score,
                reason=str(reason),
                name=_text(names.get(product_id)),
                price=price if price == price else None,
                price_ratio=ratio if ratio == ratio else None,
                upgrades=str(seed) if offer_type == OfferType.UP_SELL and isinstance(seed, str) else None,
                step=step if isinstance(step, str) else None,
            )
        )
    return ranked


def propose_bundles(
    picker: BundlePicker,
    events: Sequence[PurchaseEvent],
    ranked: Mapping[str, list[RankedCandidate]],
    max_items: int,
) -> dict[str, Bundle]:
    """The bundle of each event that has one, by event id: its basket against its ranked
    cross-sells (another design of an item just bought is no complement, so not a part)."""
    bundles: dict[str, Bundle] = {}
    for event in events:
        cross_sells = [
            c.product_id
            for c in ranked.get(event.event_id, ())
            if c.offer_type is OfferType.CROSS_SELL and not c.reason.startswith(VARIANT_PREFIX)
        ]
        basket = list(dict.fromkeys(line.product_id for line in event.lines))
        bundle = picker.pick(basket, cross_sells, max_items)
        if bundle is not None:
            bundles[event.event_id] = bundle
    return bundles


def _kept_rows(
    triggers: np.ndarray, scores: np.ndarray, offer_types: np.ndarray, reasons: np.ndarray, keep: int
) -> np.ndarray:
    """Positions of each trigger's ``keep`` best-scored rows, of its best up-sell and of its best
    offer that goes well with the basket, wherever they rank (the rules keep each a place: it must
    reach them), by trigger (ids or integer codes, as `best_rows` takes them), best first."""
    best, _ = best_rows(triggers, scores, keep)
    rows = best
    # str.startswith per reason: a fixed-width string array of every reason first costs ten times more
    goes_with = np.fromiter((str(r).startswith(GOES_WITH_PREFIX) for r in reasons), dtype=bool, count=len(reasons))
    for kept in (np.asarray(offer_types) == OfferType.UP_SELL.value, goes_with):
        at = np.flatnonzero(kept)
        rows = np.union1d(rows, at[best_rows(np.asarray(triggers)[at], np.asarray(scores)[at], 1)[0]])
    codes = trigger_codes(np.asarray(triggers)[rows])
    return rows[np.lexsort((-np.asarray(scores, dtype=float)[rows], codes))]


def _number(value: object) -> float:
    """A feature value as a float, NaN when it is missing or not a number."""
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
