"""Chaos tests: real services under faults (broker restart, kill -9, SMTP down, MLflow and Feast
stores broken, unusable XSELL_HOME). Started by `make chaos`, not by `make test`.

The session starts its OWN Kafka broker on free ports (so a test can stop and restart it) and trains
the ranker once on the shipped sample into a temporary XSELL_HOME (real Feast store, real MLflow
SQLite store). Each test gets a copy of that home (its own offer state, outbox, database), its own
topics and consumer groups, and events re-keyed from the sample with fresh ids (as bench/offers.py
does), and runs the services as `xsell ...` subprocesses. Every wait is bounded.

Sizes are the issue's: `XSELL_CHAOS_EVENTS` (default 10,000: the broker-restart test sends that
many; the kill -9 test sends half, 5,000, in one pass that kills each of the four services once)
and `XSELL_CHAOS_SMTP_DOWN_S` (default 60: SMTP down for a minute). `XSELL_CHAOS_CATCH_UP_S`
(default 600) bounds every wait; at 200-500 events/s on a 2-core machine a 10,000-event pass takes
20-60 s, the bound leaves room for a loaded machine. Smaller values make a quicker local run.

Every test prints its figures as one JSON line (`make chaos` runs pytest with -s) and appends them
to `chaos-figures.jsonl` in the session's pytest temporary folder (or to `XSELL_CHAOS_FIGURES`);
at the end of the session a table of them, one row per fault, is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from infra.kafka.broker import KafkaBroker, free_port
from infra.kafka.topics import ensure_topics
from services.delivery.service import email_skip_reason
from services.ingest.replay import produce_events, select_events, with_demo_contacts
from tests.streams import own_groups, own_topics
from training import commands
from xsell.events import EventType, PurchaseEvent, event_id_for
from xsell.history import read_purchase_history
from xsell.offers import Channel, OfferDecision, decision_id_for
from xsell.settings import REPO_ROOT, Settings, load_settings

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"
CHAOS_EVENTS = int(os.environ.get("XSELL_CHAOS_EVENTS", "10000"))
SMTP_DOWN_S = float(os.environ.get("XSELL_CHAOS_SMTP_DOWN_S", "60"))
CATCH_UP_S = float(os.environ.get("XSELL_CHAOS_CATCH_UP_S", "600"))  # upper bound of every "wait until caught up"
_figures_file: list[Path] = []  # where figures() appends (set by the session fixture below)


@dataclass
class ChaosBroker:
    """The session's own broker: settings to reach it and the handle to stop/start/kill it."""

    settings: Settings
    broker: KafkaBroker

    def restart(self, down_s: float = 3.0) -> None:
        """Stop the broker (SIGTERM), leave it down `down_s` seconds, start it again on the same data."""
        self.broker.stop()
        time.sleep(down_s)
        self.broker.start()


@pytest.fixture(scope="session")
def chaos_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosBroker]:
    """A broker of our own (free ports, temporary data dir, the jars cache `make run` fills)."""
    home = tmp_path_factory.mktemp("chaos-broker")
    settings = load_settings(
        home=home,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_jars_dir=load_settings().jars_dir,
        log_level="WARNING",
    )
    broker = KafkaBroker(settings)
    broker.start()
    yield ChaosBroker(settings, broker)
    broker.stop()


@pytest.fixture(scope="session")
def trained_home(chaos_broker: ChaosBroker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XSELL_HOME holding a ranker trained once on the sample (feature store backfilled, champion v1)."""
    home = tmp_path_factory.mktemp("chaos-trained")
    settings = chaos_broker.settings.model_copy(update={"home": home})
    summary = commands.train(settings, SAMPLE)
    assert summary["model_version"] == 1 and summary["champion"] is True
    return home


@pytest.fixture(scope="session")
def sample_events() -> list[PurchaseEvent]:
    """The sample's events in time order, with the demo contacts (so decisions can send e-mail)."""
    return [with_demo_contacts(e) for e in select_events(read_purchase_history(SAMPLE))]


_rounds = iter(range(1, 1000))


def fresh_events(base: list[PurchaseEvent], count: int) -> list[PurchaseEvent]:
    """`count` events of the sample re-keyed with ids no other test uses (order id `<order>~<round>`)."""
    events: list[PurchaseEvent] = []
    while len(events) < count:
        round_ = next(_rounds)
        for event in base[: count - len(events)]:
            order_id = f"{event.order_id}~{round_}"
            events.append(
                event.model_copy(update={"order_id": order_id, "event_id": event_id_for(order_id, event.event_type)})
            )
    return events


def figures(**values: object) -> dict[str, object]:
    """Print the test's figures as one JSON line (make chaos runs pytest with -s), append them to the
    session's figures file (for the summary table) and return them."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    values = {"nodeid": current.rsplit(" (", 1)[0], **values}
    line = json.dumps(values, default=str)
    print(line, flush=True)
    for path in _figures_file:
        with path.open("a") as handle:
            handle.write(line + "\n")
    return values


@pytest.fixture(scope="session", autouse=True)
def figures_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JSON-lines file every figures() call of this session appends to."""
    path = Path(os.environ.get("XSELL_CHAOS_FIGURES") or tmp_path_factory.getbasetemp() / "chaos-figures.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    _figures_file[:] = [path]
    return path


SUMMARY_COLUMNS = (  # (heading, figure keys: those present are shown, joined by '/')
    ("events sent", ("events_sent",)),
    ("offers expected", ("offers_expected",)),
    ("offers seen", ("offers_seen",)),
    ("dup offers", ("duplicates",)),
    ("e-mails exp/seen", ("emails_expected", "emails_seen")),
    ("dup e-mails", ("email_duplicates",)),
    ("in-app exp/rows", ("inbox_expected", "inbox_rows")),
    ("dup in-app", ("inbox_duplicates",)),
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """A table of every test's figures, one row per fault, with its outcome and duration."""
    if not _figures_file or not _figures_file[0].exists():
        return
    rows = [json.loads(line) for line in _figures_file[0].read_text().splitlines() if line.strip()]
    if not rows:
        return
    outcome: dict[str, tuple[str, float]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) == "call":
                outcome[report.nodeid] = (report.outcome, report.duration)
    table = []
    for row in rows:
        name = str(row.get("test", "?"))
        if "command" in row:
            name += f" {row['command']}"
        if "home_kind" in row:
            name += f" ({row['home_kind']})"
        cells = [name]
        for _, keys in SUMMARY_COLUMNS:
            present = [str(row[k]) for k in keys if k in row]
            cells.append("/".join(present) if present else "-")
        status, seconds = outcome.get(str(row.get("nodeid")), ("?", 0.0))
        cells += [status, f"{seconds:.0f}"]
        table.append(cells)
    headings = ["fault", *(h for h, _ in SUMMARY_COLUMNS), "result", "seconds"]
    widths = [max(len(c[i]) for c in [headings, *table]) for i in range(len(headings))]
    terminalreporter.section("chaos figures")
    for cells in [headings, ["-" * w for w in widths], *table]:
        terminalreporter.line("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    terminalreporter.line(f"(all figures: {_figures_file[0]})")


@dataclass
class Chaos:
    """One test's world: settings (own home copy, topics, groups, database, SMTP port), its services."""

    settings: Settings
    broker: ChaosBroker
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # -- environment and services -------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        """Environment of an `xsell` subprocess on this test's world."""
        s = self.settings
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("XSELL_", "MLFLOW_"))},
            "XSELL_HOME": str(s.home),
            "XSELL_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "XSELL_TOPIC_PURCHASES": s.topic_purchases,
            "XSELL_TOPIC_PURCHASES_DLQ": s.topic_purchases_dlq,
            "XSELL_TOPIC_OFFERS": s.topic_offers,
            "XSELL_TOPIC_OFFER_FEEDBACK": s.topic_offer_feedback,
            "XSELL_OFFER_GROUP": s.offer_group,
            "XSELL_DELIVERY_GROUP": s.delivery_group,
            "XSELL_INBOX_GROUP": s.inbox_group,
            "XSELL_FEEDBACK_GROUP": s.feedback_group,
            "XSELL_FEATURES_GROUP": s.features_group,
            "XSELL_DATABASE_URL": str(s.database_url),
            "XSELL_SMTP_PORT": str(s.smtp_port),
            "XSELL_DELIVERY_RETRY_BASE_S": "0.5",
            "XSELL_DELIVERY_RETRY_MAX_S": "2",
            "XSELL_POLL_MAX_RECORDS": "100",
            "XSELL_LOG_LEVEL": "INFO",
            **extra,
        }

    def start(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start `xsell ARGS` in the background, logging to logs/NAME.log (appended on restart)."""
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            env=self.env(**extra_env),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes[name] = process
        return process

    def run(self, name: str, *args: str, timeout_s: float = CATCH_UP_S, **extra_env: str) -> None:
        """Run `xsell ARGS` to completion (e.g. `--until-caught-up`); fail with its log tail if it fails."""
        process = self.start(name, *args, **extra_env)
        try:
            code = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            pytest.fail(f"xsell {' '.join(args)} did not finish in {timeout_s:.0f}s:\n{self.log_tail(name)}")
        assert code == 0, f"xsell {' '.join(args)} exited {code}:\n{self.log_tail(name)}"

    def kill9(self, name: str) -> None:
        """SIGKILL a service (a crash: no commit, no cleanup)."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop(self, name: str, timeout_s: float = 60.0) -> int | None:
        """SIGTERM a service and wait (SIGKILL after timeout); return its exit code."""
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        return process.returncode

    def stop_all(self) -> None:
        """Stop every service still running."""
        for name in list(self.processes):
            self.stop(name)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The end of a service's log."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    # -- events in, decisions out -----------------------------------------------------------------
    def produce(
        self,
        events: list[PurchaseEvent],
        chunk: int = 200,
        deadline_s: float = CATCH_UP_S,
        on_chunk: Callable[[int], None] | None = None,
    ) -> int:
        """Produce events in chunks (acks=all); a chunk that fails (broker down) is sent again after a
        pause. Return how many chunk retries there were. Consumers de-duplicate by event id."""
        retries = 0
        deadline = time.monotonic() + deadline_s
        for start in range(0, len(events), chunk):
            while True:
                try:
                    produce_events(self.settings, iter(events[start : start + chunk]))
                    break
                except (KafkaError, RuntimeError, OSError):
                    retries += 1
                    assert time.monotonic() < deadline, "could not produce within the deadline"
                    time.sleep(1.0)
            if on_chunk is not None:
                on_chunk(start + chunk)
        return retries

    def decisions(self, expected: int, timeout_s: float = CATCH_UP_S) -> list[OfferDecision]:
        """Every record on `offers`, read until `expected` distinct decisions are there (or timeout)."""
        return [
            OfferDecision.model_validate_json(r.value)
            for r in read_until(self.settings, self.settings.topic_offers, expected, timeout_s)
        ]


def read_until(settings: Settings, topic: str, expected_distinct: int, timeout_s: float) -> list:
    """Records of `topic` from the beginning (no group) until `expected_distinct` keys+values... are
    in, by decision id for `offers`; then one more short poll to catch duplicates beyond it."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    records: list = []
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(seen) < expected_distinct:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    records.append(record)
                    seen.add(json.loads(record.value)["decision_id"].encode())
        for batch in consumer.poll(timeout_ms=2000).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


class OffersTail:
    """A background reader of `offers` (no group) counting distinct decisions as they arrive."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ids: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="offers-tail")

    def __enter__(self) -> OffersTail:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        consumer = KafkaConsumer(
            self.settings.topic_offers,
            bootstrap_servers=self.settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            while not self._stop.is_set():
                for batch in consumer.poll(timeout_ms=300).values():
                    self.ids.update(json.loads(r.value)["decision_id"] for r in batch)
        finally:
            consumer.close()

    def count(self) -> int:
        """Distinct decisions seen so far."""
        return len(self.ids)


def archived_lines(settings: Settings) -> set[tuple[str, int, str, int]]:
    """(event id, line number, product id, signed quantity) of every line in the purchase archive."""
    from sqlalchemy import select  # noqa: PLC0415  (only the archive checks need it)

    from features.archive import PurchaseArchive, purchase_archive  # noqa: PLC0415  (only the archive checks need it)

    archive = PurchaseArchive(settings.db_url)
    table = purchase_archive.c
    try:
        with archive.engine.connect() as db:
            rows = db.execute(select(table.event_id, table.line_no, table.product_id, table.quantity, table.is_return))
            return {(e, n, p, -q if r else q) for e, n, p, q, r in rows}
    finally:
        archive.close()


def expected_archive(events: Iterable[PurchaseEvent]) -> set[tuple[str, int, str, int]]:
    """What the archive must hold after `events`: each line once (cancellations with negative quantities)."""
    return {
        (e.event_id, n, line.product_id, -line.quantity if e.event_type is EventType.ORDER_CANCELLED else line.quantity)
        for e in {e.event_id: e for e in events}.values()
        for n, line in enumerate(e.lines)
    }


def check_decisions(records: list[OfferDecision], events: Iterable[PurchaseEvent]) -> dict[str, int]:
    """One decision per event (ids as expected), duplicates only identical re-emissions; return counts."""

    events = list(events)
    by_id: dict[str, OfferDecision] = {}
    different = 0
    for decision in records:
        kept = by_id.setdefault(decision.decision_id, decision)
        different += kept.model_dump(exclude={"decided_at"}) != decision.model_dump(exclude={"decided_at"})
    assert {d.event_id for d in by_id.values()} == {e.event_id for e in events}
    assert set(by_id) == {decision_id_for(e.event_id) for e in events}
    return {"offers_seen": len(by_id), "duplicates": len(records) - len(by_id), "different_re_emissions": different}


def email_decisions(records: Iterable[OfferDecision]) -> set[str]:
    """Decision ids that must yield one e-mail (delivery's own rule)."""

    return {d.decision_id for d in records if email_skip_reason(d) is None}


def in_app_offer_ids(records: Iterable[OfferDecision]) -> set[str]:
    """Offer ids that must be stored for the in-app inbox."""
    return {o.offer_id for d in records if Channel.IN_APP in d.channels and d.customer_id for o in d.offers}


@pytest.fixture
def chaos(
    chaos_broker: ChaosBroker, trained_home: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Chaos]:
    """This test's world on a copy of the trained home; every service it started is stopped at the end."""
    home = tmp_path / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("kafka", "cache"))
    suffix = f"{request.node.name[:30]}-{uuid.uuid4().hex[:6]}"
    settings = chaos_broker.settings.model_copy(
        update={
            "home": home,
            **own_topics(suffix),
            **own_groups(suffix, "offer", "delivery", "inbox", "feedback", "features", "ingest"),
            "database_url": f"sqlite:///{tmp_path / 'xsell.db'}",
            "smtp_port": free_port(),
        }
    )
    ensure_topics(settings)
    logs = tmp_path / "logs"
    logs.mkdir()
    world = Chaos(settings, chaos_broker, logs)
    try:
        yield world
    finally:
        world.stop_all()
        if chaos_broker.broker.running_pid() is None:  # a test that left the broker down
            chaos_broker.broker.start()
