"""Benchmark of the checkout API's ranking alone: CPU time of one `Recommender.recommend_batch` call
by batch size, requests back to back and with a pause before each.

    .venv/bin/python -m bench.recommend            # the champion of XSELL_HOME (`make run` makes one)

Opens the recommender of an existing home in this process (its champion, online features and fold
state, as the API's ranking process does; nothing is written: answers are not recorded), then
ranks requests of `bench.api`'s mix (5-item carts of real orders of `--data`, contexts and
anonymous share as there) in batches of each `--sizes` entry: `--batches` batches back to back,
then as many with `--pause-ms` of sleep before each. The figure is the ranking's CPU time per batch
(`time.thread_time`: what the API's ranking process spends on a micro-batch, without the pickling
to and from the API process). The paused run shows what a batch costs when the caches went cold in
between, as at a low request rate.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from bench.api import data_baskets, recommendation_bodies
from services.ingest.replay import select_events
from services.offers.recommend import OfferRequest, Recommender, RequestItem
from xsell.history import read_purchase_history
from xsell.logs import configure_logging
from xsell.offers import OfferContext
from xsell.settings import load_settings


def offer_requests(data: Path, count: int, seed: int) -> list[OfferRequest]:
    """``count`` requests of `bench.api`'s mix drawn from the orders of ``data``."""
    events = list(select_events(read_purchase_history(data)))
    customers = sorted({e.customer_id for e in events if e.customer_id})
    bodies, _ = recommendation_bodies(data_baskets(events, 5), customers, count, 0.2, random.Random(seed))
    requests = []
    for body in map(json.loads, bodies):
        items = tuple(RequestItem(i["product_id"], i["quantity"], i["unit_price"]) for i in body["items"])
        requests.append(OfferRequest(OfferContext(body["context"]), items, body.get("customer_id")))
    return requests


def batch_cpu_ms(
    recommender: Recommender, requests: list[OfferRequest], size: int, batches: int, pause_s: float
) -> list[float]:
    """CPU milliseconds of each of ``batches`` calls on ``size`` requests, ``pause_s`` slept before each."""
    spent = []
    for start in range(0, size * batches, size):
        time.sleep(pause_s)
        clock = time.thread_time()
        recommender.recommend_batch(requests[start % len(requests) :][:size])
        spent.append((time.thread_time() - clock) * 1e3)
    return spent


def main() -> None:
    """Run the benchmark and print its figures as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=load_settings().sample_data, help="Orders the requests come from.")
    parser.add_argument("--sizes", default="1,4,16", help="Batch sizes, comma-separated.")
    parser.add_argument("--batches", type=int, default=200, help="Measured batches per size and run.")
    parser.add_argument("--pause-ms", type=float, default=50.0, help="Sleep before each batch of the paused run.")
    parser.add_argument("--seed", type=int, default=7, help="Seed of the request draw.")
    args = parser.parse_args()
    configure_logging("WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the CLI: no bar per download
    settings = load_settings()
    sizes = [int(size) for size in args.sizes.split(",")]
    requests = offer_requests(args.data, max(sizes) * args.batches + 300, args.seed)
    figures: dict[str, object] = {"benchmark": "recommend", "home": str(settings.home), "data": str(args.data)}
    recommender = Recommender(settings)
    with recommender.opened():
        if not recommender.has_model():
            sys.exit(f"bench.recommend: no champion in {settings.home}: run `make run` (or `xsell train`) first")
        gc.freeze()  # as the API does once the model is loaded
        batch_cpu_ms(recommender, requests, 1, 300, 0.0)  # warm: the product cache, the kernels
        for size in sizes:
            for run, pause_s in (("back_to_back", 0.0), ("paused", args.pause_ms / 1e3)):
                spent = batch_cpu_ms(recommender, requests, size, args.batches, pause_s)
                figures[f"cpu_ms_batch_{size}_{run}"] = round(float(np.median(spent)), 2)
    figures["settings"] = {"batches": args.batches, "pause_ms": args.pause_ms, "seed": args.seed}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
