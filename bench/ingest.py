"""Benchmark of the event stage: broker start-up, replay and validation throughput (events/s).

Starts its own broker on free ports in a temporary XSELL_HOME (nothing shared with `make run`),
replays `--data` into `purchases`, validates it with the ingest service, and prints one JSON line.

    .venv/bin/python -m bench.ingest --data ../shared/data/online_retail/online_retail.parquet
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from infra.kafka.broker import KafkaBroker, free_port
from infra.kafka.topics import ensure_topics
from services.ingest.replay import replay_file
from services.ingest.validator import IngestService
from xsell.logs import configure_logging
from xsell.settings import load_settings


def main() -> None:
    """Run the benchmark and print its figures as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=load_settings().sample_data)
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="xsell-bench-") as home:
        settings = load_settings(
            home=home,
            kafka_bootstrap=f"127.0.0.1:{free_port()}",
            kafka_controller_port=free_port(),
            kafka_jars_dir=load_settings().jars_dir,
        )
        broker = KafkaBroker(settings)
        broker.fetch_jars()
        started = time.monotonic()
        broker.start()
        startup_s = time.monotonic() - started
        try:
            ensure_topics(settings)
            report = replay_file(settings, args.data)
            started = time.monotonic()
            summary = IngestService(settings, until_caught_up=True).run()
            validate_s = time.monotonic() - started
        finally:
            broker.stop()
    print(
        json.dumps(
            {
                "data": str(args.data),
                "kafka_version": settings.kafka_version,
                "broker_startup_s": round(startup_s, 2),
                "events": report.total_sent,
                "replay_s": round(report.seconds, 2),
                "replay_events_per_s": round(report.total_sent / report.seconds, 1),
                "validate_s": round(validate_s, 2),
                "validate_events_per_s": round(summary.valid_events / validate_s, 1),
                "dead_lettered": sum(summary.dead_lettered.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
