"""Benchmark of the offer service: raw consume rate, sustained throughput, latency at a fixed rate,
peak memory.

Starts its own broker on free ports in a temporary XSELL_HOME (nothing shared with `make run`),
trains the ranker on `--data` (backfilling the feature store; the first version is the champion),
then measures:

- `raw_consume_per_s`: a plain kafka-python consumer (max_poll_records 5000) reading `--events`
  purchase events from `purchases`: the ceiling any Python consumer of this broker can reach;
- `events_per_s`: one `xsell offers --until-caught-up` process (XSELL_POLL_MAX_RECORDS =
  `--poll-max-records`) over the same events, counted from the moment its first batch of decisions
  was out to its last decision (Kafka timestamps of the `offers` records; start-up, model loading and
  the first batch are excluded);
- `p50_ms`/`p99_ms`: with an `xsell offers` process running and caught up (warmed up by a few
  events), `--latency-events` fresh events replayed at `--rate` events/s; latency = the decision's
  Kafka timestamp minus its purchase's Kafka timestamp (both CreateTime, same clock);
- `peak_rss_mb`: the largest resident set of the offer service processes (psutil, sampled every 0.1 s).

Events are the data set's events in time order. When more are needed than the file holds, the file is
replayed again with fresh ids: order id `<order>~<n>` and the event id derived from it (the contents,
times and customers stay those of the real data). Prints one JSON line.

    .venv/bin/python -m bench.offers --data data/online_retail_sample.parquet
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np
import psutil
from kafka import KafkaConsumer

from infra.kafka.broker import KafkaBroker, free_port
from infra.kafka.topics import ensure_topics
from services.ingest.replay import Pacing, produce_events, select_events
from xsell.events import PurchaseEvent, event_id_for
from xsell.history import read_purchase_history
from xsell.kafka_security import client_security
from xsell.logs import configure_logging
from xsell.settings import REPO_ROOT, Settings, load_settings

FETCH = {"fetch_max_bytes": 16 * 1024 * 1024, "max_partition_fetch_bytes": 8 * 1024 * 1024}


def bench_events(data: Path, count: int, skip: int = 0) -> list[PurchaseEvent]:
    """Events number `skip` to `skip + count` of the data set replayed over and over with fresh ids."""
    base = list(select_events(read_purchase_history(data)))
    events = []
    for index in range(skip, skip + count):
        round_, position = divmod(index, len(base))
        event = base[position]
        if round_:
            order_id = f"{event.order_id}~{round_}"
            event = event.model_copy(
                update={"order_id": order_id, "event_id": event_id_for(order_id, event.event_type)}
            )
        events.append(event)
    return events


def consume_all(
    settings: Settings,
    topic: str,
    expected: int,
    group: str | None = None,
    max_poll_records: int = 5000,
    timeout_s: float = 600.0,
) -> tuple[list, float]:
    """Read `expected` records of `topic`; return them and the seconds from the first poll on."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=max_poll_records,
        **FETCH,
        **client_security(settings),
    )
    records: list = []
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    if len(records) < expected:
        raise TimeoutError(f"{topic}: {len(records)} of {expected} records within {timeout_s:.0f}s")
    return records, time.perf_counter() - started


def raw_consume_rate(settings: Settings, expected: int) -> float:
    """Records/s of a plain poll loop over `purchases` (a fresh group; the group join is excluded)."""
    consumer = KafkaConsumer(
        settings.topic_purchases,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id="bench-raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
        **FETCH,
        **client_security(settings),
    )
    count, started = 0, None
    try:
        while count < expected:
            polled = consumer.poll(timeout_ms=200)
            if polled and started is None:
                started = time.perf_counter()
            count += sum(len(batch) for batch in polled.values())
    finally:
        consumer.close()
    return count / (time.perf_counter() - (started or time.perf_counter()))


def service_env(settings: Settings, poll_max_records: int) -> dict[str, str]:
    """Environment of an `xsell offers` process on the bench's broker and home."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("XSELL_", "MLFLOW_"))},
        "XSELL_HOME": str(settings.home),
        "XSELL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "XSELL_OFFER_GROUP": settings.offer_group,
        "XSELL_POLL_MAX_RECORDS": str(poll_max_records),
        "XSELL_LOG_LEVEL": "WARNING",
    }


@contextmanager
def peak_rss(process: subprocess.Popen[bytes], peaks: list[int], interval_s: float = 0.1) -> Iterator[None]:
    """Sample the process's RSS until the block ends; append the peak (bytes) to `peaks`."""
    done = threading.Event()
    peak = [0]

    def sample() -> None:
        handle = psutil.Process(process.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], handle.memory_info().rss)
            except psutil.Error:
                return
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
        peaks.append(peak[0])


def throughput(decisions: list) -> tuple[float, float]:
    """Events/s after the first batch was out, and that window's seconds. A batch's decisions share
    its decided_at; the batch was out at the median Kafka timestamp of its records (a re-emitted
    decision of an event id seen again later keeps the decided_at of its first batch)."""
    batches: dict[str, list[int]] = {}
    for record in decisions:
        batches.setdefault(json.loads(record.value)["decided_at"], []).append(record.timestamp)
    first = batches[min(batches)]
    window_s = (max(r.timestamp for r in decisions) - float(np.median(first))) / 1000
    return (len(decisions) - len(first)) / window_s, window_s


def scaled_throughput(
    settings: Settings, home: Path, command: list[str], expected: int, args: argparse.Namespace
) -> dict[str, object]:
    """Events/s of `args.instances` offer-service processes in one consumer group over the same
    purchases (own group, own output topic, a copy of the trained home), beside the one-instance run."""
    scaled = settings.model_copy(
        update={"home": home, "offer_group": "bench-offers-scaled", "topic_offers": "offers-scaled"}
    )
    ensure_topics(scaled)
    env = {
        **service_env(scaled, args.poll_max_records),
        "XSELL_OFFER_GROUP": scaled.offer_group,
        "XSELL_TOPIC_OFFERS": scaled.topic_offers,
        "XSELL_PREDICT_THREADS": "1",
    }  # as the production profile: instances share the cores
    processes = [
        subprocess.Popen([*command, "--until-caught-up"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
        for _ in range(args.instances)
    ]
    decisions, _ = consume_all(scaled, scaled.topic_offers, expected, timeout_s=900)
    for process in processes:
        process.terminate()
        process.wait(60)
    rate, _ = throughput(decisions)
    return {"instances": args.instances, f"events_per_s_{args.instances}_instances": round(rate, 1)}


def main() -> None:
    """Run the benchmark and print its figures as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=load_settings().sample_data)
    parser.add_argument("--events", type=int, default=20_000, help="Events for the consume and throughput runs.")
    parser.add_argument("--poll-max-records", type=int, default=1000, help="XSELL_POLL_MAX_RECORDS of the service.")
    parser.add_argument("--rate", type=float, default=300.0, help="Events/s of the latency run.")
    parser.add_argument("--latency-events", type=int, default=3000, help="Events of the latency run.")
    parser.add_argument(
        "--instances",
        type=int,
        default=3,
        help="Also run N offer-service instances in one group over the same events (0: skip).",
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    from training.commands import train  # noqa: PLC0415  (imports MLflow and Feast: slow)

    figures: dict[str, object] = {"data": str(args.data), "events": args.events}
    peaks: list[int] = []
    with tempfile.TemporaryDirectory(prefix="xsell-bench-") as home:
        settings = load_settings(
            home=home,
            kafka_bootstrap=f"127.0.0.1:{free_port()}",
            kafka_controller_port=free_port(),
            kafka_jars_dir=load_settings().jars_dir,
            offer_group="bench-offers",
            log_level="WARNING",
        )
        broker = KafkaBroker(settings)
        broker.fetch_jars()
        broker.start()
        try:
            ensure_topics(settings)
            clock = time.perf_counter()
            with redirect_stdout(sys.stderr):  # Feast prints materialization progress on stdout
                trained = train(settings, args.data)
            figures["train_s"] = round(time.perf_counter() - clock, 1)
            figures["model_version"] = trained["model_version"]

            events = bench_events(args.data, args.events)
            produce_events(settings, iter(events))
            figures["raw_consume_per_s"] = round(raw_consume_rate(settings, len(events)), 1)

            command = [sys.executable, "-m", "cli.main", "offers"]
            scaled_home = Path(tempfile.mkdtemp(prefix="xsell-bench-scaled-"))
            # the trained state before any decision, for the N-instance run (the broker's data stays)
            shutil.copytree(home, scaled_home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("kafka"))
            clock = time.perf_counter()
            process = subprocess.Popen(
                [*command, "--until-caught-up"],
                cwd=REPO_ROOT,
                env=service_env(settings, args.poll_max_records),
                stdout=subprocess.DEVNULL,
            )
            with peak_rss(process, peaks):
                process.wait()
            if process.returncode != 0:
                raise RuntimeError(f"xsell offers exited with {process.returncode}")
            figures["service_wall_s"] = round(time.perf_counter() - clock, 1)
            decisions, _ = consume_all(settings, settings.topic_offers, len(events))
            rate, window_s = throughput(decisions)
            figures["events_per_s"] = round(rate, 1)
            figures["throughput_window_s"] = round(window_s, 1)

            if args.instances > 1:
                figures.update(scaled_throughput(settings, scaled_home, command, len(events), args))
            shutil.rmtree(scaled_home, ignore_errors=True)

            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=service_env(settings, args.poll_max_records), stdout=subprocess.DEVNULL
            )
            try:
                with peak_rss(process, peaks):
                    fresh = bench_events(args.data, 50 + args.latency_events, skip=args.events)
                    warm, paced = fresh[:50], fresh[50:]
                    produce_events(settings, iter(warm))  # the champion loads on the first batch
                    consume_all(settings, settings.topic_offers, len(events) + len(warm), timeout_s=120)
                    produce_events(settings, iter(paced), Pacing(rate=args.rate))
                    total = len(events) + len(fresh)
                    offers, _ = consume_all(settings, settings.topic_offers, total, timeout_s=600)
            finally:
                process.terminate()
                process.wait(30)
            purchases, _ = consume_all(settings, settings.topic_purchases, total)
            produced_at = {json.loads(r.value)["event_id"]: r.timestamp for r in purchases}
            wanted = {e.event_id for e in paced}
            latency = [
                r.timestamp - produced_at[d["event_id"]]
                for r in offers
                if (d := json.loads(r.value))["event_id"] in wanted
            ]
            figures.update(
                {
                    "latency_rate_per_s": args.rate,
                    "latency_events": len(latency),
                    "p50_ms": round(float(np.percentile(latency, 50)), 1),
                    "p99_ms": round(float(np.percentile(latency, 99)), 1),
                    "max_ms": round(float(max(latency)), 1),
                }
            )
        finally:
            broker.stop()
    figures["peak_rss_mb"] = round(max(peaks) / 2**20, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
