"""Benchmark of the candidate fusion kernel alone (`models.fusion.fuse`) by catalog size and batch size.

    .venv/bin/python -m bench.fusion
    .venv/bin/python -m bench.fusion --items 4000,60000,100000 --triggers 1,5,200

Generated inputs (seed fixed): for each catalog size, four neighbour sources of `--neighbours`
random neighbours per item with uniform scores (the last seeded by the basket alone, as the
up-sell source is) plus popularity (uniform, every item offerable); each trigger a basket of 5
random items and a history of 15. This is the shape of the offer service's and the checkout API's
call, not its data: a real index's lists are uneven (the shipped sample's item-kNN source has 93
neighbours an item on average, the follow-up source 3). Each figure is the best of `--repeats`
timings of `--calls` calls, in milliseconds a call, one thread, after a warm-up call that also
compiles the kernel. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import sparse

from models.fusion import POPULARITY_SOURCE, NeighbourTables, fuse, popularity_ranking, ragged

BASKET_ITEMS = 5
HISTORY_ITEMS = 15
TAKE = 100
RRF_K = 60.0
HISTORY_WEIGHT = 0.5
MAX_HISTORY_SEEDS = 20


def neighbour_tables(n_items: int, neighbours: int, sources: int, rng: np.random.Generator) -> NeighbourTables:
    """``sources`` item x item tables of ``neighbours`` random neighbours an item (duplicates summed)."""
    rows = np.repeat(np.arange(n_items), neighbours)
    matrices = []
    for _ in range(sources):
        columns = rng.integers(0, n_items, n_items * neighbours)
        matrix = sparse.csr_matrix((rng.random(n_items * neighbours), (rows, columns)), shape=(n_items, n_items))
        matrix.sum_duplicates()
        matrices.append(matrix)
    return NeighbourTables.stack(matrices, n_items)


def call_ms(n_items: int, n_triggers: int, neighbours: int, calls: int, repeats: int, seed: int) -> float:
    """Best-of-``repeats`` milliseconds of one `fuse` call on ``n_triggers`` generated triggers."""
    rng = np.random.default_rng(seed)
    tables = neighbour_tables(n_items, neighbours, 4, rng)
    kinds = np.asarray([0, 1, 2, 3, POPULARITY_SOURCE], dtype=np.int64)
    weights = np.ones(len(kinds))
    basket_only = np.asarray([False, False, False, True, False])
    popularity = rng.random(n_items)
    rank, order = popularity_ranking(popularity)
    offerable = np.ones(n_items, dtype=bool)
    baskets = ragged([rng.integers(0, n_items, BASKET_ITEMS) for _ in range(n_triggers)])
    histories = ragged([rng.integers(0, n_items, HISTORY_ITEMS) for _ in range(n_triggers)])
    returns = ragged([np.zeros(0, np.int64) for _ in range(n_triggers)])

    def once() -> None:
        fuse(
            n_items,
            offerable,
            baskets,
            histories,
            returns,
            tables,
            kinds,
            weights,
            basket_only,
            popularity,
            rank,
            order,
            HISTORY_WEIGHT,
            MAX_HISTORY_SEEDS,
            RRF_K,
            TAKE,
            1,
        )

    once()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            once()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e3


def main() -> None:
    """Run the benchmark and print its figures as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", default="4000,60000", help="Catalog sizes, comma-separated.")
    parser.add_argument("--triggers", default="1,5,100", help="Triggers a call (batch sizes), comma-separated.")
    parser.add_argument("--neighbours", type=int, default=20, help="Neighbours an item in each source.")
    parser.add_argument("--calls", type=int, default=20, help="Calls a timing.")
    parser.add_argument("--repeats", type=int, default=5, help="Timings a figure (the best is kept).")
    parser.add_argument("--seed", type=int, default=7, help="Seed of the generated inputs.")
    args = parser.parse_args()
    figures: dict[str, object] = {"benchmark": "fusion"}
    for n_items in (int(size) for size in args.items.split(",")):
        for n_triggers in (int(size) for size in args.triggers.split(",")):
            ms = call_ms(n_items, n_triggers, args.neighbours, args.calls, args.repeats, args.seed)
            figures[f"ms_per_call_{n_items}_items_{n_triggers}_triggers"] = round(ms, 3)
    figures["settings"] = {
        "neighbours": args.neighbours,
        "calls": args.calls,
        "repeats": args.repeats,
        "seed": args.seed,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
