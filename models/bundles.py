"""Bundles, "complete the set" offers: a basket item and a few of the trigger's ranked cross-sells
that are all bought together, offered as one.

A bundle is a seed, an item of the trigger's basket, and 2 to ``max_items`` parts taken from the
trigger's ranked cross-sell candidates such that every part is associated with the seed and every
two parts with each other, each part is of another kind (category) than the seed and than the
other parts (a set is different pieces, not three designs of one), and each part is in at least
``min_confidence`` of the seed's orders (bought with it often) and shares a word of its range or
theme with it, other than either head noun (``features.catalog.range_words``: the rest of the
REGENCY tea set, the 50'S CHRISTMAS wrap and crackers; not the shop's bestsellers that happen to
sell beside it, nor another kind of BAG). Associated means what an "Often
bought with" claim means (``models.candidates.bought_together``): the index's ``min_support``
shared orders, a lift of ``CandidateConfig.min_claim_lift`` and more shared orders than chance
gives, so a bestseller bought with everything never joins a set, nor a pair of rare items that
met in two orders. The parts are taken greedily in rank order:
the best-ranked candidate that starts a set with some seed, then each later candidate associated
with that seed and with every part taken before it. Where several seeds make a set with that
first part, the one whose parts rank best wins, compared part by part (a missing part ranks below
any; equal sets: the first seed in the basket).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from features.catalog import range_words
from models.candidates import CandidateConfig, bought_together, csr_values, sorted_csr
from models.index import CandidateIndex
from models.reasons import REASONS

MIN_PARTS = 2  # a set is at least two items besides the seed
MIN_CONFIDENCE = 0.1  # "bought together often": each part in at least a tenth of the seed's orders
PART_SEPARATOR = " + "


class Bundle(NamedTuple):
    """A "complete the set" proposal: the basket product it completes, its parts (product ids, in
    the order they ranked) and the reason each part carries."""

    seed: str
    parts: tuple[str, ...]
    reason: str


class BundlePicker:
    """Bundles from a ``CandidateIndex``'s co-occurrence counts (lookup tables built once per index)."""

    def __init__(
        self, index: CandidateIndex, config: CandidateConfig | None = None, min_confidence: float = MIN_CONFIDENCE
    ) -> None:
        self.index = index
        self.config = config or CandidateConfig()
        self.min_confidence = min_confidence
        products = index.products
        self._kind = pd.factorize(products["category"])[0]  # -1: no kind known
        heads = products["head"] if "head" in products else pd.Series("", index=products.index)
        self._range_words = [
            range_words(name, head) for name, head in zip(products["name"], heads.fillna(""), strict=True)
        ]
        self._cooccurrence = sorted_csr(index.cooccurrence)
        self._orders = products["orders"].to_numpy(dtype=np.float64)
        self._product_ids = products["product_id"].to_numpy(dtype=object)
        self._names = products["name"].fillna(products["product_id"]).to_numpy(dtype=object)
        empty = np.zeros(0, dtype=np.int64)
        self.associated(empty, empty)  # compile the lookup now, not in a batch

    def associated(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per pair of item positions (``a[k]``, ``b[k]``), whether the two are bought together
        beyond popularity (see the module docstring)."""
        a, b = a.astype(np.int64), b.astype(np.int64)
        indptr, indices, data = self._cooccurrence
        co_count = csr_values(indptr, indices, data, a, b)
        return bought_together(co_count, self._orders[a], self._orders[b], self.index, self.config)

    def confidence(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per pair of item positions, P(b in an order | a in it): the share of a's orders that hold b."""
        a, b = a.astype(np.int64), b.astype(np.int64)
        indptr, indices, data = self._cooccurrence
        share: np.ndarray = csr_values(indptr, indices, data, a, b) / np.maximum(self._orders[a], 1)
        return share

    def pick(self, basket: Sequence[str], ranked: Sequence[str], max_items: int) -> Bundle | None:
        """The bundle of a trigger with this ``basket`` (product ids) and these ranked cross-sell
        candidates (product ids, best first), at most ``max_items`` parts; None when no seed has
        two associated parts that are associated with each other."""
        position = self.index.position
        seeds = list(dict.fromkeys(position[p] for p in basket if p in position))
        in_basket = set(basket)
        candidates = list(dict.fromkeys(position[p] for p in ranked if p in position and p not in in_basket))
        if not seeds or len(candidates) < MIN_PARTS or max_items < MIN_PARTS:
            return None
        rows = np.asarray([*seeds, *candidates], dtype=np.int64)  # seeds, then candidates
        n = len(candidates)
        firsts, seconds = np.repeat(rows, n), np.tile(rows[len(seeds) :], len(rows))
        kind_a, kind_b = self._kind[firsts], self._kind[seconds]
        indptr, indices, data = self._cooccurrence
        co_count = csr_values(indptr, indices, data, firsts, seconds)  # one look-up for both tests
        # a set is different pieces: each part of another kind than the seed and than the other parts
        together = bought_together(co_count, self._orders[firsts], self._orders[seconds], self.index, self.config)
        together = (together & ((kind_a != kind_b) | (kind_a < 0))).reshape(len(rows), n)
        with_seed, with_part = together[: len(seeds)], together[len(seeds) :]  # x candidates
        # and bought with the seed often: in at least ``min_confidence`` of the seed's orders
        share = (co_count / np.maximum(self._orders[firsts], 1)).reshape(len(rows), n)[: len(seeds)]
        with_seed &= share >= self.min_confidence
        # and of the seed's range: a part shares a range or theme word with it ("REGENCY"); looked
        # at only where the rest holds (a set intersection in Python per pair)
        words = self._range_words
        for s, c in zip(*np.nonzero(with_seed), strict=True):
            with_seed[s, c] = bool(words[seeds[s]] & words[candidates[c]])
        for first in np.flatnonzero(with_seed.any(axis=0)).tolist():  # the first part that starts a set wins
            by_seed = np.flatnonzero(with_seed[:, first])
            parts = _greedy_parts(first, with_seed[by_seed] & with_part[first], with_part, max_items)
            best = int(np.lexsort(parts.T[::-1])[0])  # the seed whose parts rank best (ties: the first)
            if parts[best, MIN_PARTS - 1] < n:
                break
        else:
            return None
        seed, chosen = seeds[by_seed[best]], [int(p) for p in parts[best] if p < n]
        names = PART_SEPARATOR.join(str(self._names[candidates[p]]) for p in chosen)
        return Bundle(
            seed=str(self._product_ids[seed]),
            parts=tuple(str(self._product_ids[candidates[p]]) for p in chosen),
            reason=REASONS["bundle"].format(seed=self._names[seed], items=names),
        )


def _greedy_parts(first: int, allowed: np.ndarray, with_part: np.ndarray, max_items: int) -> np.ndarray:
    """Per row of ``allowed`` (a seed's associates that are the first part's too, a boolean row
    per seed): ``first``, then in rank order each later candidate it allows that is associated with
    every part taken before it (``with_part``: candidate x candidate), up to ``max_items`` parts.
    Rows of part ranks; a missing part is ``len(with_part)``, which ranks below any."""
    allowed = allowed.copy()
    allowed[:, : first + 1] = False
    parts = np.full((len(allowed), max_items), len(with_part), dtype=np.int64)
    parts[:, 0] = first
    for k in range(1, max_items):
        left = np.asarray(allowed.any(axis=1))
        part = allowed.argmax(axis=1)  # the best-ranked one left
        parts[left, k] = part[left]
        allowed &= with_part[part] & left[:, None]
    return parts
