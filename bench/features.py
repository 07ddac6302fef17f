"""Benchmark of the feature store: backfill time, online read latency, streaming update rate.

    .venv/bin/python -m bench.features --data ../shared/data/online_retail/online_retail.parquet

Backfills `--data` into a temporary XSELL_HOME, measures online reads (1 customer; 100 products)
over `--reads` calls each, then folds and pushes the last `--stream-events` events again through
the streaming pipeline's batch step (`FeaturePipeline.apply`, as new event ids) in batches of
`--batch` to measure the streaming update rate (the collector settled first, as the service's
consumer loop does: `xsell.consumer.settle_heap`): events/s, batch latency p50/p99, and where a
batch's time goes (milliseconds per batch and step: refresh, fold, save, push_online,
push_offline; `PipelineStats.seconds`), with offline pushes as configured
(`XSELL_FEAST_PUSH_OFFLINE`, off by default; `stream_push_offline` says which). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from features.backfill import backfill
from features.online import OnlineFeatureReader
from features.pipeline import FeaturePipeline
from xsell.consumer import settle_heap
from xsell.events import PurchaseEvent
from xsell.history import events_from_history, read_purchase_history
from xsell.logs import configure_logging
from xsell.settings import load_settings


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50 and p99 of latency samples in milliseconds."""
    return {
        "p50_ms": round(float(np.percentile(samples_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(samples_ms, 99)), 2),
    }


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=load_settings().sample_data)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--stream-events", type=int, default=3500)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="xsell-bench-features-") as home:
        settings = load_settings(home=home)
        started = time.monotonic()
        report = backfill(settings, args.data)
        backfill_s = time.monotonic() - started

        pipeline = FeaturePipeline(settings)
        reader = OnlineFeatureReader(pipeline.store)
        customers = sorted(pipeline.fold.customers)
        products = sorted(pipeline.fold.products)
        rng = random.Random(0)
        one_customer, hundred_products = [], []
        for _ in range(args.reads):
            ids = [rng.choice(customers)]
            t = time.perf_counter()
            reader.customers(ids)
            one_customer.append((time.perf_counter() - t) * 1e3)
            ids = rng.sample(products, 100)
            t = time.perf_counter()
            reader.products(ids)
            hundred_products.append((time.perf_counter() - t) * 1e3)

        history = read_purchase_history(args.data)
        tail = list(events_from_history(history.lines))[-args.stream_events :]
        fresh = [PurchaseEvent(**{**e.model_dump(), "event_id": f"bench-{e.event_id}"}) for e in tail]
        settle_heap(settings.gc_young_threshold)  # as the service's consumer loop does once started
        batch_ms = []
        started = time.monotonic()
        for i in range(0, len(fresh), args.batch):
            t = time.perf_counter()
            pipeline.apply(fresh[i : i + args.batch])
            batch_ms.append((time.perf_counter() - t) * 1e3)
        stream_s = time.monotonic() - started
    print(
        json.dumps(
            {
                "data": str(args.data),
                "backfill_s": round(backfill_s, 2),
                "backfill_steps_s": report.as_dict()["seconds"],
                "online_read_1_customer": percentiles(one_customer),
                "online_read_100_products": percentiles(hundred_products),
                "stream_events": len(fresh),
                "stream_batch": args.batch,
                "stream_push_offline": settings.feast_push_offline,
                "stream_events_per_s": round(len(fresh) / stream_s, 1),
                "stream_batch_latency": percentiles(batch_ms),
                "stream_step_ms_per_batch": {
                    step: round(seconds * 1e3 / len(batch_ms), 1) for step, seconds in pipeline.stats.seconds.items()
                },
                "stream_rows_per_batch": {
                    "customers": round(pipeline.stats.customer_rows_pushed / len(batch_ms)),
                    "products": round(pipeline.stats.product_rows_pushed / len(batch_ms)),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
