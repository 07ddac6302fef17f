"""Rank candidates for a batch of purchases with the champion and online features.

The same code path as training and batch scoring: candidates from the champion's own candidate
index (`training.dataset.candidate_context_columns`), features assembled by
`training.dataset.build_feature_rows` (here from the Feast online store instead of the offline
store: product features are the current ones, indexed by product id alone), one `predict` call for
the whole batch.

Product features change slowly: they are cached for `ttl_s` and a product is dropped from the
cache as soon as a purchase of it passes through (its statistics just changed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.online import OnlineFeatureReader
from services.offers.rules import RankedCandidate
from training.dataset import build_feature_rows, candidate_context_columns
from training.ranker import best_rows, score_rows
from training.recommend import Champion
from xsell.events import PurchaseEvent
from xsell.offers import OfferType


class ProductFeatureCache:
    """Online product features with a time-to-live and explicit invalidation.

    An invalidated product is re-read once its row is ``refresh_s`` old: a stream of purchases of
    the same products (a busy batch buys hundreds) costs at most one re-read per product and
    ``refresh_s`` instead of one per batch."""

    def __init__(self, reader: OnlineFeatureReader, ttl_s: float = 300.0, refresh_s: float = 5.0) -> None:
        self.reader = reader
        self.ttl_s = ttl_s
        self.refresh_s = min(refresh_s, ttl_s)
        self._rows: dict[str, tuple[float, float, dict[str, object]]] = {}  # read at, stale after, row

    def invalidate(self, product_ids: Sequence[str]) -> None:
        """These products were just bought: re-read each once its row is ``refresh_s`` old."""
        for product_id in product_ids:
            cached = self._rows.get(product_id)
            if cached is not None:
                read_at, stale_after, row = cached
                self._rows[product_id] = (read_at, min(stale_after, read_at + self.refresh_s), row)

    def get(self, product_ids: Sequence[str]) -> dict[str, dict[str, object]]:
        """Feature rows by product id; one online read for all that are missing or stale."""
        now = time.monotonic()
        wanted = list(dict.fromkeys(product_ids))
        missing = [p for p in wanted if p not in self._rows or now > self._rows[p][1]]
        for row in self.reader.products(missing):
            self._rows[str(row["product_id"])] = (now, now + self.ttl_s, row)
        return {p: self._rows[p][2] for p in wanted if p in self._rows}


def triggers_for(events: Sequence[PurchaseEvent], owned: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """One trigger per purchase event, in the shape the candidate generator and features expect
    (``owned``: each customer's earlier products, most recent first, as training's history)."""
    rows = []
    for event in events:
        at = pd.Timestamp(event.occurred_at)
        rows.append({
            "trigger_id": event.event_id, "order_id": event.order_id, "customer_id": event.customer_id,
            "at": at, "window_cutoff": at, "basket": tuple(dict.fromkeys(line.product_id for line in event.lines)),
            "history": owned.get(event.customer_id or "", ()), "returned": (),
        })
    return pd.DataFrame(rows, columns=["trigger_id", "order_id", "customer_id", "at", "window_cutoff", "basket",
                                       "history", "returned"])


def rank_batch(
    champion: Champion,
    events: Sequence[PurchaseEvent],
    owned: dict[str, tuple[str, ...]],
    reader: OnlineFeatureReader,
    products: ProductFeatureCache,
    keep: int = 20,
    predict_threads: int = 0,
) -> dict[str, list[RankedCandidate]]:
    """The `keep` best candidates per event id, best first, scored in one predict call
    (``predict_threads``: LightGBM threads, 0 for its default)."""
    if not events:
        return {}
    triggers = triggers_for(events, owned)
    candidates = candidate_context_columns(champion.generator, triggers)
    if len(candidates["trigger_id"]) == 0:
        return {event.event_id: [] for event in events}
    customers = [e.customer_id for e in events if e.customer_id]
    customer_rows = {str(r["customer_id"]): r for r in reader.customers(list(dict.fromkeys(customers)))}
    customer_frame = pd.DataFrame(
        [customer_rows.get(e.customer_id or "", {}) for e in events], index=triggers["trigger_id"].to_numpy()
    ).drop(columns=["customer_id"], errors="ignore")
    product_rows = products.get(pd.unique(candidates["product_id"]).tolist())
    product_frame = pd.DataFrame.from_dict(product_rows, orient="index").drop(columns=["product_id"], errors="ignore")

    rows = build_feature_rows(candidates, triggers, customer_frame, product_frame)
    scores = score_rows(champion.booster, rows, threads=predict_threads)
    best, _ = best_rows(rows["trigger_id"].to_numpy(), scores, keep)
    names = champion.product_names
    ranked: dict[str, list[RankedCandidate]] = {event.event_id: [] for event in events}
    ratios = np.asarray(candidates["price_ratio"], dtype=float)[best]
    for trigger_id, product_id, offer_type, reason, score, ratio in zip(
        rows["trigger_id"].to_numpy()[best].tolist(), rows["product_id"].to_numpy()[best].tolist(),
        rows["offer_type"].to_numpy()[best].tolist(), rows["reason"].to_numpy()[best].tolist(),
        scores[best].tolist(), ratios.tolist(), strict=True,
    ):
        price = product_rows.get(product_id, {}).get("current_price")
        ranked[str(trigger_id)].append(RankedCandidate(
            product_id=str(product_id), offer_type=OfferType(offer_type), score=score, reason=str(reason),
            name=_text(names.get(product_id)), price=float(price) if isinstance(price, (int, float)) else None,
            price_ratio=ratio if ratio == ratio else None,
        ))
    return ranked


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
