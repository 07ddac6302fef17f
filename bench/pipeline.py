"""Benchmark of the whole pipeline: every service up on this machine, purchases replayed as fast
as the broker takes them, timed until every stage has caught up.

Starts its own stack on free ports in a temporary XSELL_HOME (`--profile local`: broker and SMTP
capture; `production`: also Redis, PostgreSQL and the MLflow server, and the profile's instance
counts), trains the ranker on `--data` (the first version is the champion), starts every service
as `make run` does (ingest, feature pipeline, archive, offers, delivery, inbox, feedback, API),
warms them up with a few purchases, waits until the stack idles (`settle_s`; `idle_cores_before`:
the CPU it still used, in cores, below `QUIET_CORES` for `QUIET_INTERVALS` samples in a row unless
it did not settle within `QUIET_TIMEOUT_S`), then replays `--events` purchases (the data set's events in
time order, again with fresh ids when more are needed, with demo e-mail contacts) and samples each
consumer group's committed offsets every 0.2 s until all have committed everything:

- `pipeline_events_per_s`: events / seconds from the replay's start until the last group caught up;
- `stages`: per consumer group, records it handled / seconds from its first commit of the run to
  its last (its own rate while it had work), and when it caught up after the replay began;
- `limited_by`: the group that caught up last;
- `raw_consume_per_s`: a plain kafka-python consumer reading the same purchases afterwards (the
  ceiling of any Python consumer of this broker on this machine);
- `cpu`: the CPU time (user + system, psutil) each process of the stack spent between the replay's
  start and the moment every group caught up, with its live descendants and the ones it reaped
  (uvicorn workers, PostgreSQL backends): per stage (its instances), per other process (the API,
  the index refresh, the MLflow UI or server, the broker's JVM, the SMTP capture, Redis and
  PostgreSQL when the profile runs them), as milliseconds per replayed event; `total_cpu_ms_per_event`
  sums them, and `cpu_ceiling_events_per_s` = 1000 x cores / total is the rate this machine's cores
  could sustain for that work per event, were every core busy with nothing else;
  `stack_busy_cores` is the CPU the stack got (seconds per second). Given apart and not in the
  total: `bench_process_cpu_ms_per_event` (this process: the replay's producer and the sampling)
  and `machine_busy_cores` (every process on the machine, others' work included).

Prints one JSON line.

    .venv/bin/python -m bench.pipeline --data data/online_retail_sample.parquet --events 5000
    .venv/bin/python -m bench.pipeline --profile production --offer-instances 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from kafka import KafkaAdminClient

from bench.offers import bench_events, raw_consume_rate
from bench.stack import running_stack
from infra.stack import stack_status
from services.ingest.replay import produce_events, with_demo_contacts
from xsell.kafka_security import client_security
from xsell.logs import configure_logging
from xsell.settings import REPO_ROOT, Settings

SAMPLE_EVERY_S = 0.2
WARM_UP_EVENTS = 50
QUIET_CORES = 0.2  # the stack counts as settled below this much CPU (cores) over `QUIET_INTERVALS`
QUIET_EVERY_S = 2.0
QUIET_INTERVALS = 3  # in a row: a stack starved by other work on the machine is not mistaken for idle
QUIET_TIMEOUT_S = 300.0


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


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process, its live descendants and the children each reaped
    (0 when it is gone)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.Error:  # ended between the listing and the reading: its parent reaps its time
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds of every process of the stack, of this process and of the whole machine, at one moment."""

    at: float
    processes: dict[str, float]
    bench: float
    machine_busy: float


class CpuMeter:
    """The stack's processes (by `stack_status`: services, broker, SMTP capture, Redis, PostgreSQL,
    MLflow server), found once, and their CPU time on demand."""

    def __init__(self, settings: Settings) -> None:
        self.pids = {row["component"]: row["pid"] for row in stack_status(settings) if row["pid"] is not None}
        self.stages = list(settings.consumer_groups)

    def snapshot(self) -> CpuSnapshot:
        """CPU seconds so far of each process, of this process and of the machine (busy time of all cores)."""
        machine, bench = psutil.cpu_times(), psutil.Process().cpu_times()
        return CpuSnapshot(
            at=time.perf_counter(),
            processes={name: tree_cpu_s(pid) for name, pid in self.pids.items()},
            bench=bench.user + bench.system,  # its own threads: the services it started are its children
            machine_busy=machine.user + machine.nice + machine.system + machine.irq + machine.softirq,
        )

    def stage_of(self, name: str) -> str | None:
        """The consumer group stage a service instance belongs to (`offers-2` -> `offers`), else None."""
        return next((stage for stage in self.stages if name == stage or name.startswith(f"{stage}-")), None)

    def figures(self, before: CpuSnapshot, after: CpuSnapshot, events: int) -> dict:
        """CPU milliseconds per event between two snapshots: per stage, per other process, in total;
        the ceiling that work per event puts on this machine's rate."""

        def per_event(seconds: float) -> float:
            return round(seconds / events * 1000, 3)

        spent = {name: after.processes[name] - before.processes.get(name, 0.0) for name in after.processes}
        stages = dict.fromkeys(self.stages, 0.0)
        others: dict[str, float] = {}
        for name, seconds in spent.items():
            if (stage := self.stage_of(name)) is not None:
                stages[stage] += seconds
            else:
                others[name] = seconds
        total = sum(spent.values())
        cores = os.cpu_count() or 1
        elapsed = after.at - before.at
        return {
            "cores": cores,
            "stages_cpu_ms_per_event": {stage: per_event(seconds) for stage, seconds in stages.items()},
            "others_cpu_ms_per_event": {name: per_event(seconds) for name, seconds in sorted(others.items())},
            "total_cpu_ms_per_event": per_event(total),
            "cpu_ceiling_events_per_s": round(events * cores / total) if total else None,
            "stack_busy_cores": round(total / elapsed, 2),
            "bench_process_cpu_ms_per_event": per_event(after.bench - before.bench),
            "machine_busy_cores": round((after.machine_busy - before.machine_busy) / elapsed, 2),
        }


def wait_quiet(meter: CpuMeter) -> tuple[float, float]:
    """Wait until the stack idles (start-up work done: the MLflow UI's job runners import MLflow
    for a minute or more); the seconds waited and the cores the stack used in the last interval."""
    started = time.perf_counter()
    last, quiet = meter.snapshot(), 0
    while True:
        time.sleep(QUIET_EVERY_S)
        now = meter.snapshot()
        busy = (sum(now.processes.values()) - sum(last.processes.values())) / (now.at - last.at)
        quiet = quiet + 1 if busy < QUIET_CORES else 0
        if quiet >= QUIET_INTERVALS or now.at - started > QUIET_TIMEOUT_S:
            return now.at - started, busy
        last = now


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
    with running_stack("xsell-bench-pipeline-", args.data, args.profile, args.offer_instances) as settings:
        committed = Committed(settings)
        events = [with_demo_contacts(e) for e in bench_events(args.data, args.events + WARM_UP_EVENTS)]
        produce_events(settings, iter(events[:WARM_UP_EVENTS]))  # models loaded, caches warm, groups committed
        wait_caught_up(committed, args.timeout_s)
        meter = CpuMeter(settings)
        settle_s, idle_cores = wait_quiet(meter)
        cpu_before = meter.snapshot()
        started = time.perf_counter()
        samples = [(started, committed.read())]
        produce_events(settings, iter(events[WARM_UP_EVENTS:]))
        produced_s = time.perf_counter() - started
        samples += wait_caught_up(committed, args.timeout_s)
        cpu = meter.figures(cpu_before, meter.snapshot(), args.events)
        committed.close()
        total_s = samples[-1][0] - started
        stages = stage_figures(samples, started)
        for stage, cpu_ms in cpu["stages_cpu_ms_per_event"].items():
            stages[stage]["cpu_ms_per_event"] = cpu_ms
        limited_by = max(stages, key=lambda s: stages[s]["caught_up_after_s"])
        figures = {
            "benchmark": "pipeline",
            "profile": args.profile,
            "data": str(args.data),
            "events": args.events,
            "offer_instances": settings.offer_instances,
            "pipeline_events_per_s": round(args.events / total_s),
            "settle_s": round(settle_s, 1),
            "idle_cores_before": round(idle_cores, 2),
            "produce_s": round(produced_s, 2),
            "total_s": round(total_s, 2),
            "limited_by": limited_by,
            "stages": stages,
            "cpu": cpu,
            "raw_consume_per_s": round(raw_consume_rate(settings, args.events + WARM_UP_EVENTS)),
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
