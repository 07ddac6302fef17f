"""Benchmark of the whole pipeline: every service up on this machine, purchases replayed as fast
as the broker takes them, timed until every stage has caught up.

Starts its own stack on free ports in a temporary XSELL_HOME (`--profile local`: broker and SMTP
capture; `production`: also Redis, PostgreSQL and the MLflow server, and the profile's instance
counts), trains the ranker on `--data` (the first version is the champion), starts every service
as `make run` does (ingest, feature pipeline, archive, offers, delivery, inbox, feedback, API),
warms them up with a few purchases, then replays `--events` purchases (the data set's events in
time order, again with fresh ids when more are needed, with demo e-mail contacts) and samples each
consumer group's committed offsets every 0.2 s until all have committed everything:

- `pipeline_events_per_s`: events / seconds from the replay's start until the last group caught up;
- `stages`: per consumer group, records it handled / seconds from its first commit of the run to
  its last (its own rate while it had work), and when it caught up after the replay began;
- `limited_by`: the group that caught up last;
- `raw_consume_per_s`: a plain kafka-python consumer reading the same purchases afterwards (the
  ceiling of any Python consumer of this broker on this machine).

Prints one JSON line.

    .venv/bin/python -m bench.pipeline --data data/online_retail_sample.parquet --events 5000
    .venv/bin/python -m bench.pipeline --profile production --offer-instances 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from kafka import KafkaAdminClient

from bench.offers import bench_events, raw_consume_rate
from cli.demo import start_services
from infra.kafka.broker import free_port
from infra.processes import ServiceProcesses
from infra.stack import stack_down, stack_up
from services.ingest.replay import produce_events, with_demo_contacts
from services.schema import create_schema
from xsell.kafka_security import client_security
from xsell.logs import configure_logging
from xsell.settings import REPO_ROOT, Settings, load_settings

SAMPLE_EVERY_S = 0.2
WARM_UP_EVENTS = 50


class Committed:
    """Committed offsets and end offsets of the pipeline's groups, read from the broker."""

    def __init__(self, settings: Settings) -> None:
        self.admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap, client_id="bench-pipeline", **client_security(settings)
        )
        self.groups = settings.consumer_groups
        purchases, offers = [settings.topic_purchases], [settings.topic_offers]
        self.topics = {
            "ingest": purchases,
            "features": purchases,
            "archive": purchases,
            "offers": purchases,
            "delivery": offers,
            "inbox": offers,
            "feedback": [settings.topic_offers, settings.topic_offer_feedback, settings.topic_purchases],
        }

    def read(self) -> dict[str, tuple[int, int]]:
        """Per stage: (records committed, records on its topics) over every partition of the topics
        it consumes (a partition it has not committed on counts from its start: the topics are new)."""
        from kafka import TopicPartition  # noqa: PLC0415  (with the admin client)
        from kafka.admin import OffsetSpec  # noqa: PLC0415  (with the admin client)

        committed = self.admin.list_group_offsets(list(self.groups.values()))
        partitions = [
            TopicPartition(topic["name"], partition["partition_index"])
            for topic in self.admin.describe_topics(sorted({t for ts in self.topics.values() for t in ts}))
            for partition in topic["partitions"]
        ]
        ends = self.admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST))
        figures = {}
        for stage, group in self.groups.items():
            offsets = committed.get(group) or {}
            mine = [tp for tp in partitions if tp.topic in self.topics[stage]]
            done = sum(offsets[tp].offset if tp in offsets else 0 for tp in mine)
            figures[stage] = (done, sum(ends[tp].offset for tp in mine))
        return figures

    def close(self) -> None:
        """Close the admin client."""
        self.admin.close()


def wait_caught_up(committed: Committed, timeout_s: float) -> list[tuple[float, dict[str, tuple[int, int]]]]:
    """Sample every group until each has committed up to its end offsets; the samples, timed."""
    samples = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        figures = committed.read()
        samples.append((time.perf_counter(), figures))
        if all(done >= end for done, end in figures.values()):
            return samples
        time.sleep(SAMPLE_EVERY_S)
    behind = {stage: end - done for stage, (done, end) in samples[-1][1].items() if done < end}
    raise TimeoutError(f"the pipeline did not catch up within {timeout_s:.0f}s; behind: {behind}")


def stage_figures(samples: list[tuple[float, dict[str, tuple[int, int]]]], started: float) -> dict[str, dict]:
    """Per stage: records handled in the run, its own rate while it had work, when it caught up."""
    first = samples[0][1]
    stages = {}
    for stage, (done_before, _) in first.items():
        moves = [(at, figures[stage][0]) for at, figures in samples if figures[stage][0] > done_before]
        handled = samples[-1][1][stage][0] - done_before
        if not moves:
            stages[stage] = {"records": 0, "records_per_s": None, "caught_up_after_s": 0.0}
            continue
        first_at = moves[0][0]
        last_at = next(at for at, done in moves if done == samples[-1][1][stage][0])
        own_s = max(last_at - first_at, SAMPLE_EVERY_S)
        stages[stage] = {
            "records": handled,
            "records_per_s": round(handled / own_s),
            "caught_up_after_s": round(last_at - started, 2),
        }
    return stages


def bench_settings(home: Path, profile: str, offer_instances: int | None = None) -> Settings:
    """Settings of the bench's own stack: its home, free ports, the `make run` jars cache."""
    ports = {
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "kafka_controller_port": free_port(),
        "api_port": free_port(),
        "smtp_port": free_port(),
        "mlflow_ui_port": free_port(),
        "metrics_port_base": free_port(),
        "redis_port": free_port(),
        "postgres_port": free_port(),
    }
    instances = {"offer_instances": offer_instances} if offer_instances else {}
    return load_settings(
        home=home, profile=profile, kafka_jars_dir=load_settings().jars_dir, log_level="WARNING", **ports, **instances
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "online_retail_sample.parquet")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--profile", choices=("local", "production"), default="local")
    parser.add_argument(
        "--offer-instances", type=int, default=None, help="default: the profile's (1 local, 3 production)"
    )
    parser.add_argument("--timeout-s", type=float, default=900.0)
    args = parser.parse_args()
    configure_logging("WARNING")
    home = Path(tempfile.mkdtemp(prefix="xsell-bench-pipeline-"))
    home.chmod(0o755)  # the production profile's PostgreSQL runs as the postgres user under root
    settings = bench_settings(home, args.profile, args.offer_instances)
    try:
        stack_up(settings, create_schema)
        from training import commands  # noqa: PLC0415  (LightGBM, MLflow: slow to import)

        with redirect_stdout(sys.stderr):
            commands.train(settings, args.data)
        start_services(settings, settings.as_environment())
        committed = Committed(settings)
        events = [with_demo_contacts(e) for e in bench_events(args.data, args.events + WARM_UP_EVENTS)]
        produce_events(settings, iter(events[:WARM_UP_EVENTS]))  # models loaded, caches warm, groups committed
        wait_caught_up(committed, args.timeout_s)
        started = time.perf_counter()
        samples = [(started, committed.read())]
        produce_events(settings, iter(events[WARM_UP_EVENTS:]))
        produced_s = time.perf_counter() - started
        samples += wait_caught_up(committed, args.timeout_s)
        committed.close()
        total_s = samples[-1][0] - started
        stages = stage_figures(samples, started)
        limited_by = max(stages, key=lambda s: stages[s]["caught_up_after_s"])
        figures = {
            "benchmark": "pipeline",
            "profile": args.profile,
            "data": str(args.data),
            "events": args.events,
            "offer_instances": settings.offer_instances,
            "pipeline_events_per_s": round(args.events / total_s),
            "produce_s": round(produced_s, 2),
            "total_s": round(total_s, 2),
            "limited_by": limited_by,
            "stages": stages,
            "raw_consume_per_s": round(raw_consume_rate(settings, args.events + WARM_UP_EVENTS)),
        }
    finally:
        ServiceProcesses(settings).stop_all()
        stack_down(settings)
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
