"""The compiled core of candidate generation: seeds, per-source scores and ranks, weighted
reciprocal-rank fusion and the top ``take`` items of each trigger, one trigger at a time.

``models.candidates`` describes the method; this module only computes it, in numba, because the
numpy version had to score every (trigger, item) cell densely and was the offer service's slowest
stage. Work per trigger is proportional to the seeds' neighbour lists plus the ``take`` most
popular items, never the whole catalog, and memory is a few catalog-sized scratch arrays per
thread, made once and reused, whatever the batch size.

Exactness: sums run in the same order as the numpy version (seeds in order, sources in order), and
a source ranks items by score, ties by item position (a stable sort), so scores, ranks and fused
scores are bit-identical to it. Items tied on fused score are taken by item position.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse

POPULARITY_SOURCE = -1  # a ``source_kind`` that scores every offerable item by popularity
MIN_TRIGGERS_PER_THREAD = 32  # below this, starting a thread costs more than it saves
MAX_SCRATCH_SIZES = 4  # catalog sizes whose scratch arrays a thread keeps
_SCRATCH = threading.local()


@dataclass(frozen=True)
class NeighbourTables:
    """Neighbour lists of several sources as one CSR layout: source ``s``'s row of item ``i``
    spans ``indices[indptr[s, i]:indptr[s, i + 1]]``."""

    indptr: np.ndarray  # (sources, items + 1) int64
    indices: np.ndarray  # int64
    data: np.ndarray  # float64

    @classmethod
    def stack(cls, matrices: list[sparse.csr_matrix], n_items: int) -> NeighbourTables:
        """One table from per-source item x item CSR matrices (in ``source_kind`` order)."""
        indptr = np.zeros((max(len(matrices), 1), n_items + 1), dtype=np.int64)
        indices, data, offset = [], [], 0
        for s, matrix in enumerate(matrices):
            indptr[s] = matrix.indptr.astype(np.int64) + offset
            indices.append(matrix.indices.astype(np.int64))
            data.append(matrix.data.astype(np.float64))
            offset += matrix.nnz
        return cls(
            indptr,
            np.concatenate(indices) if indices else np.zeros(0, np.int64),
            np.concatenate(data) if data else np.zeros(0, np.float64),
        )


@dataclass(frozen=True)
class FusedCandidates:
    """The kept candidates of a batch of triggers, best first within a trigger: row ``r`` is item
    ``item[r]`` of trigger ``trigger[r]``; per-source columns follow the sources' order."""

    trigger: np.ndarray  # int64
    item: np.ndarray  # int64
    rank: np.ndarray  # 1-based candidate rank within the trigger
    fused: np.ndarray  # float64
    score: np.ndarray  # (rows, sources) float64, 0 where the source does not score the item
    source_rank: np.ndarray  # (rows, sources) int64, the item's rank in the source, 0 where unscored
    best_seed: np.ndarray  # (rows, sources) int64, the seed item contributing most, -1 if none


def ragged(lists: Sequence[Collection[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of item positions (one a trigger) as ``fuse`` takes them: (offsets, concatenated positions)."""
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    return offsets, np.fromiter((i for x in lists for i in x), dtype=np.int64, count=int(offsets[-1]))


def popularity_ranking(popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fuse``'s ``popularity_rank`` and ``popularity_order``: each item's rank from 1, most popular
    first, ties by position, and the items in that order."""
    order = np.argsort(-popularity, kind="stable").astype(np.int64)
    rank = np.empty(len(popularity), dtype=np.int64)
    rank[order] = np.arange(1, len(popularity) + 1)
    return rank, order


def fuse(
    n_items: int,
    offerable: np.ndarray,
    baskets: tuple[np.ndarray, np.ndarray],
    histories: tuple[np.ndarray, np.ndarray],
    returns: tuple[np.ndarray, np.ndarray],
    tables: NeighbourTables,
    source_kind: np.ndarray,
    source_weight: np.ndarray,
    basket_seeds_only: np.ndarray,
    popularity: np.ndarray,
    popularity_rank: np.ndarray,
    popularity_order: np.ndarray,
    history_weight: float,
    max_history_seeds: int,
    rrf_k: float,
    take: int,
    threads: int = 1,
) -> FusedCandidates:
    """Candidates of each trigger. ``baskets``, ``histories`` and ``returns`` are (offsets, item
    positions) per trigger, histories most recent first; ``source_kind[s]`` is a table row or
    ``POPULARITY_SOURCE``; ``basket_seeds_only[s]``: the source is seeded by the basket alone.
    ``popularity_rank`` ranks the items from 1, ``popularity_order`` lists them in that order, and
    an item of no popularity (0) has none to offer. ``threads`` > 1 splits a large batch into that
    many runs in parallel (0: one per core)."""
    t_count = len(baskets[0]) - 1
    threads = threads or os.cpu_count() or 1
    chunks = min(threads, t_count // MIN_TRIGGERS_PER_THREAD) or 1
    bounds = np.linspace(0, t_count, chunks + 1).astype(int)

    def run(start: int, stop: int) -> tuple[np.ndarray, ...]:
        ragged = [
            (offsets[start : stop + 1] - offsets[start], items[offsets[start] : offsets[stop]])
            for offsets, items in (baskets, histories, returns)
        ]
        scratch = _scratch(n_items, len(source_kind))
        out = _fuse(
            n_items,
            offerable,
            ragged[0][0],
            ragged[0][1],
            ragged[1][0],
            ragged[1][1],
            ragged[2][0],
            ragged[2][1],
            tables.indptr,
            tables.indices,
            tables.data,
            source_kind,
            source_weight,
            basket_seeds_only,
            popularity,
            popularity_rank,
            popularity_order,
            float(history_weight),
            int(max_history_seeds),
            float(rrf_k),
            int(take),
            *scratch,
        )
        return (out[0] + start, *out[1:])

    if chunks == 1:
        return FusedCandidates(*run(0, t_count))
    with ThreadPoolExecutor(chunks, thread_name_prefix="xsell-fuse") as pool:  # the kernel releases the GIL
        parts = list(pool.map(run, bounds[:-1], bounds[1:]))
    return FusedCandidates(*(np.concatenate(columns) for columns in zip(*parts, strict=True)))


def _scratch(n_items: int, n_sources: int) -> tuple[np.ndarray, ...]:
    """This thread's scratch arrays of ``_fuse`` for a catalog of ``n_items`` and ``n_sources``
    sources: made once, the kernel resets what a trigger sets before the next, so that a call on one
    trigger costs what the trigger reaches, not the catalog's size. A thread keeps the arrays of
    its last few catalog sizes (the champion's and the challenger's index)."""
    cache: dict[tuple[int, int], tuple[np.ndarray, ...]] = _SCRATCH.__dict__.setdefault("by_size", {})
    key = (n_items, n_sources)
    if key not in cache:
        if len(cache) >= MAX_SCRATCH_SIZES:
            cache.clear()
        n, shape = n_items, (n_sources, n_items)
        cache[key] = (
            np.zeros(n, dtype=np.bool_),  # excluded
            np.zeros(n, dtype=np.bool_),  # is_seed
            np.zeros(n, dtype=np.bool_),  # listed
            np.zeros(n),  # top_value
            np.zeros(shape),  # score
            np.zeros(shape, dtype=np.int64),  # best (seed + 1)
            np.zeros(shape, dtype=np.int64),  # rank
            np.empty(shape, dtype=np.int64),  # touched
            np.empty(n, dtype=np.int64),  # seeds
            np.empty(n),  # weights
            np.empty(2 * n, dtype=np.int64),  # positive: the items listed, then one source's ranked
            np.empty(2 * n),  # values
            np.empty(n, dtype=np.uint64),  # sort_keys
            np.empty(n, dtype=np.int64),  # sort_spare
        )
    return cache[key]


@numba.njit(cache=True, nogil=True)
def _fuse(
    n: int,
    offerable: np.ndarray,
    basket_ptr: np.ndarray,
    basket_items: np.ndarray,
    history_ptr: np.ndarray,
    history_items: np.ndarray,
    returned_ptr: np.ndarray,
    returned_items: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    source_kind: np.ndarray,
    source_weight: np.ndarray,
    basket_only: np.ndarray,
    popularity: np.ndarray,
    popularity_rank: np.ndarray,
    popularity_order: np.ndarray,
    history_weight: float,
    max_history_seeds: int,
    rrf_k: float,
    take: int,
    excluded: np.ndarray,
    is_seed: np.ndarray,
    listed: np.ndarray,
    top_value: np.ndarray,
    score: np.ndarray,
    best: np.ndarray,
    rank: np.ndarray,
    touched: np.ndarray,
    seeds: np.ndarray,
    weights: np.ndarray,
    positive: np.ndarray,
    values: np.ndarray,
    sort_keys: np.ndarray,
    sort_spare: np.ndarray,
) -> tuple[np.ndarray, ...]:
    # The scratch arrays from `excluded` on are the caller's (`_scratch`). `excluded` to `rank`
    # are all-zero on entry (``best`` holds seed + 1) and every entry a trigger sets is reset
    # before the next one; the others are written before they are read. So a call touches only
    # what its triggers reach, never the whole catalog.
    t_count = len(basket_ptr) - 1
    n_sources = len(source_kind)
    n_touched = np.zeros(n_sources, dtype=np.int64)
    has_popularity = False
    for s in range(n_sources):
        if source_kind[s] == POPULARITY_SOURCE:
            has_popularity = True

    capacity = t_count * max(min(take, n), 0)
    o_trigger = np.empty(capacity, dtype=np.int64)
    o_item = np.empty(capacity, dtype=np.int64)
    o_rank = np.empty(capacity, dtype=np.int64)
    o_fused = np.empty(capacity)
    o_score = np.zeros((capacity, n_sources))
    o_source_rank = np.zeros((capacity, n_sources), dtype=np.int64)
    o_best = np.full((capacity, n_sources), -1, dtype=np.int64)
    rows = 0

    for t in range(t_count):
        # seeds: the basket (weight 1), then the most recent distinct history items
        n_seeds = 0
        for j in range(basket_ptr[t], basket_ptr[t + 1]):
            item = basket_items[j]
            excluded[item] = True
            if not is_seed[item]:
                is_seed[item] = True
                seeds[n_seeds] = item
                weights[n_seeds] = 1.0
                n_seeds += 1
        n_basket = n_seeds
        for j in range(history_ptr[t], history_ptr[t + 1]):
            item = history_items[j]
            excluded[item] = True
            if not is_seed[item] and n_seeds - n_basket < max_history_seeds:
                is_seed[item] = True
                seeds[n_seeds] = item
                weights[n_seeds] = history_weight
                n_seeds += 1
        for j in range(returned_ptr[t], returned_ptr[t + 1]):
            excluded[returned_items[j]] = True

        # each neighbour source: sums and best seeds over the items it reaches, then its ranks
        m = 0  # the items some source ranks, listed once each in `positive`
        for s in range(n_sources):
            kind = source_kind[s]
            if kind == POPULARITY_SOURCE:
                continue
            row_score, row_best, row_rank, row_touched = score[s], best[s], rank[s], touched[s]
            count = 0
            last = n_basket if basket_only[s] else n_seeds
            for k in range(last):
                seed, w = seeds[k], weights[k]
                for j in range(indptr[kind, seed], indptr[kind, seed + 1]):
                    item = indices[j]
                    if row_best[item] == 0:
                        row_touched[count] = item
                        count += 1
                    value = data[j] * w
                    row_score[item] += value
                    if value >= top_value[item]:  # ties: the later seed, as a scatter-assign would
                        top_value[item] = value
                        row_best[item] = seed + 1
            n_touched[s] = count
            ranked = 0
            for r in range(count):
                item = row_touched[r]
                top_value[item] = 0.0
                if excluded[item] or not offerable[item]:
                    row_score[item] = 0.0
                elif row_score[item] > 0:
                    values[m + ranked] = row_score[item]
                    positive[m + ranked] = item
                    ranked += 1
            _sort_descending(values[m : m + ranked], positive[m : m + ranked], n, sort_keys, sort_spare)
            kept = m
            for r in range(m, m + ranked):
                item = positive[r]
                row_rank[item] = r - m + 1
                if not listed[item]:
                    listed[item] = True
                    positive[kept] = item
                    kept += 1
            m = kept
        # popularity scores every offerable item: besides the items listed, only the `take` most
        # popular others can make the cut (an item no other source ranks has popularity alone)
        if has_popularity:
            extra = 0
            for r in range(len(popularity_order)):
                if extra >= take:
                    break
                item = popularity_order[r]
                if popularity[item] <= 0:
                    break
                if offerable[item] and not excluded[item] and not listed[item]:
                    listed[item] = True
                    positive[m] = item
                    m += 1
                    extra += 1

        # fused scores, summed in source order (bit-identical to a dense sum over sources)
        n_listed = m
        m = 0
        for r in range(n_listed):
            item = positive[r]
            total = 0.0
            for s in range(n_sources):
                if source_kind[s] == POPULARITY_SOURCE:
                    if offerable[item] and popularity[item] > 0:
                        total += source_weight[s] / (rrf_k + popularity_rank[item])
                elif rank[s, item] > 0:
                    total += source_weight[s] / (rrf_k + rank[s, item])
            if total > 0:
                positive[m] = item
                values[m] = total
                m += 1
            else:
                listed[item] = False

        # the best `take` items by fused score, ties by position
        keep = min(take, m)
        if keep > 0:
            if keep < m:  # keep the items at or above the keep-th largest value, then sort those
                threshold = -np.partition(-values[:m], keep - 1)[keep - 1]
                chosen = 0
                for r in range(m):
                    if values[r] >= threshold:
                        positive[chosen], values[chosen] = positive[r], values[r]
                        chosen += 1
                    else:
                        listed[positive[r]] = False
                m = chosen
            _sort_descending(values[:m], positive[:m], n, sort_keys, sort_spare)
            for r in range(keep):
                item = positive[r]
                o_trigger[rows] = t
                o_item[rows] = item
                o_rank[rows] = r + 1
                o_fused[rows] = values[r]
                for s in range(n_sources):
                    if source_kind[s] == POPULARITY_SOURCE:
                        if offerable[item] and popularity[item] > 0:
                            o_score[rows, s] = popularity[item]
                            o_source_rank[rows, s] = popularity_rank[item]
                    else:
                        o_score[rows, s] = score[s, item]
                        o_source_rank[rows, s] = rank[s, item]
                        o_best[rows, s] = best[s, item] - 1
                rows += 1

        # reset what this trigger set
        for r in range(m):
            listed[positive[r]] = False
        for s in range(n_sources):
            for r in range(n_touched[s]):
                item = touched[s, r]
                score[s, item] = 0.0
                best[s, item] = 0
                rank[s, item] = 0
            n_touched[s] = 0
        for k in range(n_seeds):
            is_seed[seeds[k]] = False
        for j in range(basket_ptr[t], basket_ptr[t + 1]):
            excluded[basket_items[j]] = False
        for j in range(history_ptr[t], history_ptr[t + 1]):
            excluded[history_items[j]] = False
        for j in range(returned_ptr[t], returned_ptr[t + 1]):
            excluded[returned_items[j]] = False

    return (
        o_trigger[:rows],
        o_item[:rows],
        o_rank[:rows],
        o_fused[:rows],
        o_score[:rows],
        o_source_rank[:rows],
        o_best[:rows],
    )


@numba.njit(cache=True, nogil=True)
def _sort_descending(values: np.ndarray, items: np.ndarray, n: int, key_bits: np.ndarray, spare: np.ndarray) -> None:
    """Reorder ``values`` and ``items`` (positions below ``n``) by value, largest first, ties by
    item: an LSD radix sort, item bytes first, then the value's bits (a positive double's bits
    order like the double). Stable and linear: several times faster than a comparison sort on the
    few thousand items of a source."""
    m = len(values)
    if m < 2:
        return
    order = spare[:m]
    for r in range(m):
        order[r] = r
    scratch = np.empty(m, dtype=np.int64)
    counts = np.empty(257, dtype=np.int64)
    keys = key_bits[:m]
    bits = values.view(np.uint64)
    item_passes = 0
    while (n - 1) >> (8 * item_passes) > 0:
        item_passes += 1
    for p in range(item_passes + 8):
        if p < item_passes:
            for r in range(m):
                keys[r] = np.uint64(items[r])
            shift = np.uint64(8 * p)
        else:
            if p == item_passes:
                for r in range(m):
                    keys[r] = ~bits[r]  # descending
            shift = np.uint64(8 * (p - item_passes))
        counts[:] = 0
        for r in range(m):
            counts[((keys[r] >> shift) & np.uint64(255)) + 1] += 1
        if counts.max() == m:  # every key has the same digit: this pass would not move anything
            continue
        for d in range(256):
            counts[d + 1] += counts[d]
        for r in range(m):
            at = order[r]
            digit = (keys[at] >> shift) & np.uint64(255)
            scratch[counts[digit]] = at
            counts[digit] += 1
        order, scratch = scratch, order
    sorted_values = np.empty(m)
    sorted_items = np.empty(m, dtype=np.int64)
    for r in range(m):
        sorted_values[r] = values[order[r]]
        sorted_items[r] = items[order[r]]
    values[:] = sorted_values
    items[:] = sorted_items
