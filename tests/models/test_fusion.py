"""The compiled fusion kernel against a dense numpy statement of the same method: seeds, per-source
sums and best seeds, stable ranks, weighted reciprocal-rank fusion, top items (generated data:
random neighbour tables with many tied scores, the case that decides ranks)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from models.fusion import (
    POPULARITY_SOURCE,
    FusedCandidates,
    NeighbourTables,
    _sort_descending,
    fuse,
    popularity_ranking,
    ragged,
)

N_ITEMS = 300
RRF_K = 20.0


def _table(rng: np.random.Generator, density: float) -> sparse.csr_matrix:
    matrix = sparse.random(N_ITEMS, N_ITEMS, density=density, format="csr", random_state=rng)
    matrix.data = np.round(matrix.data * 4) / 4 + 0.25  # few distinct values: plenty of ties
    return matrix


def _catalog(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Offerable flags (9 in 10) and popularity with many ties, 0 where not offerable."""
    offerable = rng.random(N_ITEMS) > 0.1
    return offerable, np.where(offerable, rng.integers(0, 20, N_ITEMS).astype(float), 0.0)


def _fuse_triggers(
    triggers: list[tuple[list, list, list]],
    tables: NeighbourTables,
    kinds: np.ndarray,
    weights: np.ndarray,
    basket_only: np.ndarray,
    catalog: tuple[np.ndarray, np.ndarray],
    history_weight: float,
    max_seeds: int,
    take: int,
    threads: int = 1,
) -> FusedCandidates:
    """``fuse`` on (basket, history, returned) lists of item positions, one tuple a trigger."""
    offerable, popularity = catalog
    return fuse(
        N_ITEMS,
        offerable,
        ragged([t[0] for t in triggers]),
        ragged([t[1] for t in triggers]),
        ragged([t[2] for t in triggers]),
        tables,
        kinds,
        weights,
        basket_only,
        popularity,
        *popularity_ranking(popularity),
        history_weight,
        max_seeds,
        RRF_K,
        take,
        threads,
    )


def _dense_reference(
    tables,
    kinds,
    weights,
    basket_only,
    offerable,
    popularity,
    popularity_rank,
    basket,
    history,
    returned,
    history_weight,
    max_seeds,
    take,
):
    """The method written out densely, one trigger, with numpy's stable sorts."""
    excluded = ~offerable.copy()
    excluded[basket + history + returned] = True
    seeds = list(dict.fromkeys(basket))
    seed_weight = [1.0] * len(seeds)
    recent = [i for i in dict.fromkeys(history) if i not in set(seeds)][:max_seeds]
    seeds, seed_weight = seeds + recent, seed_weight + [history_weight] * len(recent)
    n_basket = len(dict.fromkeys(basket))
    fused = np.zeros(N_ITEMS)
    per_source = []
    for s, kind in enumerate(kinds):
        if kind == POPULARITY_SOURCE:
            score = np.where(excluded, 0.0, popularity)
            rank = popularity_rank
            best = np.full(N_ITEMS, -1)
        else:
            score, best, top = np.zeros(N_ITEMS), np.full(N_ITEMS, -1), np.zeros(N_ITEMS)
            used = n_basket if basket_only[s] else len(seeds)
            for seed, w in zip(seeds[:used], seed_weight[:used], strict=True):
                row = tables[kind].getrow(seed)
                for item, value in zip(row.indices, row.data * w, strict=True):
                    score[item] += value
                    if value >= top[item]:
                        top[item], best[item] = value, seed
            score[excluded] = 0.0
            rank = np.empty(N_ITEMS, dtype=np.int64)
            rank[np.argsort(-score, kind="stable")] = np.arange(1, N_ITEMS + 1)
        fused += np.where(score > 0, weights[s] / (RRF_K + rank), 0.0)
        per_source.append((score, np.where(score > 0, rank, 0), best))
    fused[excluded] = -np.inf
    order = [i for i in np.lexsort((np.arange(N_ITEMS), -fused)) if np.isfinite(fused[i]) and fused[i] > 0][:take]
    return order, fused, per_source


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuse_equals_the_dense_method(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tables = [_table(rng, 0.05), _table(rng, 0.2), _table(rng, 0.01)]
    kinds = np.asarray([0, 1, POPULARITY_SOURCE, 2], dtype=np.int64)
    weights = np.asarray([1.0, 0.5, 0.5, 1.0])
    basket_only = np.asarray([False, False, False, True])
    offerable, popularity = catalog = _catalog(rng)
    popularity_rank, _ = popularity_ranking(popularity)
    triggers = [
        (
            list(rng.integers(0, N_ITEMS, rng.integers(1, 6))),
            list(rng.integers(0, N_ITEMS, rng.integers(0, 40))),
            list(rng.integers(0, N_ITEMS, rng.integers(0, 3))),
        )
        for _ in range(25)
    ]
    triggers.append(([5, 5, 7], [7, 9, 9, 11], []))  # duplicates in basket and history, overlap between them
    take, max_seeds, history_weight = 40, 12, 0.5

    kept = _fuse_triggers(
        triggers,
        NeighbourTables.stack(tables, N_ITEMS),
        kinds,
        weights,
        basket_only,
        catalog,
        history_weight,
        max_seeds,
        take,
    )

    for t, (basket, history, returned) in enumerate(triggers):
        order, fused, per_source = _dense_reference(
            tables,
            kinds,
            weights,
            basket_only,
            offerable,
            popularity,
            popularity_rank,
            [int(i) for i in basket],
            [int(i) for i in history],
            [int(i) for i in returned],
            history_weight,
            max_seeds,
            take,
        )
        mine = kept.trigger == t
        assert kept.item[mine].tolist() == order
        assert kept.rank[mine].tolist() == list(range(1, len(order) + 1))
        assert kept.fused[mine].tolist() == fused[order].tolist()  # bit-identical sums
        for s, (score, rank, best) in enumerate(per_source):
            assert kept.score[mine, s].tolist() == score[order].tolist()
            assert kept.source_rank[mine, s].tolist() == rank[order].tolist()
            assert kept.best_seed[mine, s].tolist() == best[order].tolist()


def test_sort_descending_is_stable_and_matches_lexsort() -> None:
    rng = np.random.default_rng(7)
    for size in (0, 1, 2, 50, 3000):
        values = rng.integers(1, 30, size).astype(float) / 7  # ties everywhere
        items = rng.permutation(5000)[:size].astype(np.int64)
        expected = np.lexsort((items, -values))
        sorted_values, sorted_items = values.copy(), items.copy()
        _sort_descending(
            sorted_values, sorted_items, 5000, np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.int64)
        )
        assert sorted_items.tolist() == items[expected].tolist()
        assert sorted_values.tolist() == values[expected].tolist()


def test_fuse_call_after_call_and_in_threads_equals_one_batch() -> None:
    """The kernel's scratch arrays live across calls (per thread): each trigger alone, then the
    batch split over threads, gives what the batch gave in one call."""
    rng = np.random.default_rng(11)
    tables = NeighbourTables.stack([_table(rng, 0.05), _table(rng, 0.2)], N_ITEMS)
    kinds = np.asarray([0, POPULARITY_SOURCE, 1], dtype=np.int64)
    catalog = _catalog(rng)
    triggers = [
        (list(rng.integers(0, N_ITEMS, rng.integers(1, 6))), list(rng.integers(0, N_ITEMS, rng.integers(0, 30))), [])
        for _ in range(80)
    ]

    def run(part: list[tuple[list, list, list]], threads: int = 1) -> list[tuple[list, list, list]]:
        kept = _fuse_triggers(
            part,
            tables,
            kinds,
            np.asarray([1.0, 0.3, 0.7]),
            np.asarray([False, False, True]),
            catalog,
            0.5,
            10,
            25,
            threads,
        )
        return [
            (
                kept.item[kept.trigger == t].tolist(),
                kept.fused[kept.trigger == t].tolist(),
                kept.best_seed[kept.trigger == t].tolist(),
            )
            for t in range(len(part))
        ]

    batch = run(triggers)
    assert all(items for items, _, _ in batch)
    assert [run([trigger])[0] for trigger in triggers] == batch
    assert run(triggers, threads=2) == batch


def test_ragged_offsets_delimit_each_trigger() -> None:
    offsets, items = ragged([[3, 4], [], np.asarray([9])])
    assert offsets.tolist() == [0, 2, 2, 3]
    assert items.tolist() == [3, 4, 9]


def test_popularity_ranking_ranks_most_popular_first_ties_by_position() -> None:
    rank, order = popularity_ranking(np.asarray([2.0, 5.0, 0.0, 5.0]))
    assert order.tolist() == [1, 3, 0, 2]
    assert rank.tolist() == [3, 1, 4, 2]
