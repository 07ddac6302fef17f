"""Ingestion against the real broker: exact round-trips, per-customer order, and the DLQ."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from infra.kafka.broker import free_port
from services.ingest.replay import produce_events, replay_file
from services.ingest.validator import IngestService
from tests.conftest import EventFactory
from xsell.events import LineItem
from xsell.settings import Settings


def test_thousand_events_round_trip_in_order_per_customer(
    kafka_settings: Settings, make_event: EventFactory, read_topic
) -> None:
    start = datetime(2011, 3, 1, tzinfo=UTC)
    events = [make_event(customer_id=f"C{i % 37}", occurred_at=start + timedelta(seconds=i)) for i in range(1_000)]
    sent = produce_events(kafka_settings, iter(events))
    assert sum(sent.values()) == 1_000

    summary = IngestService(kafka_settings, until_caught_up=True).run()
    assert summary.valid_events == 1_000
    assert summary.orders == 1_000
    assert summary.dead_lettered == {}

    records = read_topic(kafka_settings.topic_purchases, expected=1_000)
    assert len(records) == 1_000
    seen: dict[bytes, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        seen[record.key].append(json.loads(record.value)["event_id"])
    expected: dict[bytes, list[str]] = defaultdict(list)
    for event in events:
        expected[event.key()].append(event.event_id)
    assert seen == expected  # every customer's events, each once, in the order produced


def test_bad_records_land_in_dlq_with_reason_and_valid_ones_flow(
    kafka_settings: Settings, make_event: EventFactory, read_topic
) -> None:
    good = [make_event(customer_id=f"G{i}") for i in range(20)]
    template = json.loads(good[0].to_bytes())

    def variant(**changes: object) -> bytes:
        document = json.loads(json.dumps(template))
        for key, value in changes.items():
            if key.startswith("line_"):
                document["lines"][0][key.removeprefix("line_")] = value
            elif value is None:
                document.pop(key)
            else:
                document[key] = value
        return json.dumps(document).encode()

    huge_line = LineItem(product_id="P", name="x" * 500, quantity=1, unit_price=1.0)
    oversized = make_event(lines=tuple([huge_line] * 1_500)).to_bytes()  # ~800 KB, a valid shape
    very_large = b'{"schema_version": 1, "padding": "' + b"y" * (2 * 1024 * 1024) + b'"}'  # > DLQ limit
    bad = {
        "malformed_json": b'{"schema_version": 1, "order_id": ',
        "wrong_types": variant(line_quantity="two"),
        "missing_fields": variant(order_id=None),
        "negative_price": variant(line_unit_price=-3.0),
        "non_numeric_price": variant(line_unit_price="3,50"),
        "unknown_schema_version": variant(schema_version=99),
        "non_utf8": b'{"schema_version": 1, "name": "\xff\xfe"}',
        "oversized": oversized,
        "very_large": very_large,
    }
    expected_reason = {
        "malformed_json": "malformed_json",
        "wrong_types": "invalid_event",
        "missing_fields": "invalid_event",
        "negative_price": "invalid_event",
        "non_numeric_price": "invalid_event",
        "unknown_schema_version": "unknown_schema_version",
        "non_utf8": "not_utf8",
        "oversized": "oversized",
        "very_large": "oversized",
    }
    producer = KafkaProducer(
        bootstrap_servers=kafka_settings.kafka_bootstrap, acks="all", max_request_size=4 * 1024 * 1024
    )
    values = [g.to_bytes() for g in good[:10]] + list(bad.values()) + [g.to_bytes() for g in good[10:]]
    for value in values:
        producer.send(kafka_settings.topic_purchases, key=b"same-key", value=value)  # one partition: known order
    producer.flush()
    producer.close()

    summary = IngestService(kafka_settings, until_caught_up=True).run()
    assert summary.valid_events == len(good)
    assert sum(summary.dead_lettered.values()) == len(bad)

    letters = read_topic(kafka_settings.topic_purchases_dlq, expected=len(bad))
    assert len(letters) == len(bad)  # none lost, none duplicated
    by_offset = {}
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers}
        by_offset[int(headers["xsell.dlq.source.offset"])] = (letter, headers)
    for position, name in enumerate(bad, start=10):
        letter, headers = by_offset[position]
        assert headers["xsell.dlq.reason"] == expected_reason[name], name
        assert headers["xsell.dlq.source.topic"] == kafka_settings.topic_purchases
        assert headers["xsell.dlq.error"]
        if name == "very_large":
            assert headers["xsell.dlq.truncated"] == "true"
            assert int(headers["xsell.dlq.original.size"]) == len(bad[name])
            assert len(letter.value) < kafka_settings.dlq_max_message_bytes
        else:
            assert letter.value == bad[name]  # original bytes kept as they were


def test_replay_counts_and_skips_broken_rows(kafka_settings: Settings, tmp_path: Path, read_topic) -> None:
    data = tmp_path / "orders.csv"
    data.write_text(
        "order_id,customer_id,product_id,quantity,unit_price,ordered_at\n"
        "o1,c1,p1,2,1.5,2024-03-01T10:00:00Z\n"
        "o2,c2,p1,1,-1,2024-03-01T11:00:00Z\n"
        "o3,c1,p2,-1,4.0,2024-03-02T10:00:00Z\n"
        "o4,,p3,1,2.0,2024-03-03T10:00:00Z\n"
    )
    report = replay_file(kafka_settings, data)
    assert report.sent == {"purchase": 2, "order_cancelled": 1}
    assert report.skipped == {"non_positive_price": 1}
    assert len(read_topic(kafka_settings.topic_purchases, expected=3)) == 3


def test_ingest_exits_cleanly_on_sigterm(kafka_settings: Settings, repo_root: Path) -> None:
    env = {
        **os.environ,
        "XSELL_HOME": str(kafka_settings.home),
        "XSELL_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "XSELL_TOPIC_PURCHASES": kafka_settings.topic_purchases,
        "XSELL_TOPIC_PURCHASES_DLQ": kafka_settings.topic_purchases_dlq,
        "XSELL_INGEST_GROUP": kafka_settings.ingest_group,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ingest"],
        env=env,
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    assert process.stderr is not None
    for line in process.stderr:  # wait until it consumes, then stop it
        if '"consuming"' in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert json.loads(stdout.strip().splitlines()[-1])["dead_lettered"] == 0


def test_consumer_metrics_are_served_and_count_records(kafka_settings: Settings, make_event: EventFactory) -> None:

    port = free_port()
    settings = kafka_settings.model_copy(update={"metrics_port": port})
    produce_events(settings, iter([make_event(customer_id=f"M{i}") for i in range(25)]))
    IngestService(settings, until_caught_up=True).run()  # main thread: serves /metrics on `port`
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "xsell_records_consumed_total" and s.labels.get("service") == "xsell-ingest"
    ]
    assert samples and samples[0].value >= 25
