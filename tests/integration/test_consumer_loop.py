"""The shared consumer loop against the real broker: a failing store makes a batch wait and retry
from the last commit (nothing skipped, nothing lost); a bug stops the loop without committing;
a batch's pending effects complete while the next batch is handled, and a failed completion redoes
the batch; members of one group that run until caught up follow their partitions through a
rebalance; the loop exports its group's lag and the timestamp of the newest record it handled."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest
from kafka.errors import KafkaTimeoutError
from prometheus_client import REGISTRY

from services.ingest.replay import produce_events
from tests.conftest import EventFactory
from xsell.consumer import Completion, ConsumerLoop
from xsell.events import parse_purchase_event
from xsell.settings import Settings


def test_a_store_failure_is_retried_from_the_last_commit(kafka_settings: Settings, make_event: EventFactory) -> None:
    events = [make_event(customer_id=f"R{i % 3}") for i in range(30)]
    produce_events(kafka_settings, iter(events))
    settings = kafka_settings.model_copy(update={"poll_max_records": 10})
    handled: list[str] = []
    failures = iter([True, False, True])  # fail the 1st and 3rd batch attempts

    def handler(records: list) -> None:
        if next(failures, False):
            raise sqlite3.OperationalError("database is locked (simulated)")
        handled.extend(parse_purchase_event(r.value).event_id for r in records)

    loop = ConsumerLoop(
        settings,
        group_id=f"retry-{settings.ingest_group}",
        topics=[settings.topic_purchases],
        handler=handler,
        client_id="retry-test",
        until_caught_up=True,
    )
    loop.run()
    assert sorted(handled) == sorted(e.event_id for e in events)  # each once: failed batches were redone whole


def test_a_bug_stops_the_loop_without_committing(kafka_settings: Settings, make_event: EventFactory) -> None:
    produce_events(kafka_settings, iter([make_event(customer_id="B1") for _ in range(5)]))
    group = f"bug-{kafka_settings.ingest_group}"

    def broken(records: list) -> None:
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        ConsumerLoop(
            kafka_settings,
            group_id=group,
            topics=[kafka_settings.topic_purchases],
            handler=broken,
            client_id="bug-test",
            until_caught_up=True,
        ).run()
    seen: list[str] = []
    ConsumerLoop(
        kafka_settings,
        group_id=group,
        topics=[kafka_settings.topic_purchases],
        handler=lambda records: seen.extend(r.value for r in records),
        client_id="bug-test-2",
        until_caught_up=True,
    ).run()
    assert len(seen) == 5  # nothing was committed by the failed run


def test_pending_effects_complete_during_the_next_batch_and_a_failure_redoes_the_batch(
    kafka_settings: Settings,
    make_event: EventFactory,
) -> None:
    events = [make_event(customer_id=f"P{i % 3}") for i in range(40)]
    produce_events(kafka_settings, iter(events))
    settings = kafka_settings.model_copy(update={"poll_max_records": 10})
    group = f"pending-{settings.ingest_group}"
    trace: list[tuple[str, int]] = []
    handled: list[str] = []
    completed: list[str] = []
    failures = iter([False, True])  # the second batch's effects fail once (an acknowledgement timed out)

    def handler(records: list) -> Completion:
        batch = len([step for step, _ in trace if step == "handled"])
        ids = [parse_purchase_event(r.value).event_id for r in records]
        handled.extend(ids)
        trace.append(("handled", batch))

        def complete() -> None:
            trace.append(("completed", batch))
            if next(failures, False):
                raise KafkaTimeoutError("acknowledgement timed out (simulated)")
            completed.extend(ids)

        return complete

    ConsumerLoop(
        settings,
        group_id=group,
        topics=[settings.topic_purchases],
        handler=handler,
        client_id="pending-test",
        until_caught_up=True,
    ).run()
    assert sorted(completed) == sorted(e.event_id for e in events)  # each once: the failed batch was redone
    assert len(handled) > len(events)  # the failed batch was handled twice
    assert trace[:3] == [("handled", 0), ("handled", 1), ("completed", 0)]  # overlap: 1 ran while 0 was pending
    assert trace[-1][0] == "completed"  # the last batch completed on the way out
    left: list[object] = []
    ConsumerLoop(
        settings,
        group_id=group,
        topics=[settings.topic_purchases],
        handler=lambda records: left.extend(records),
        client_id="pending-test-2",
        until_caught_up=True,
    ).run()
    assert left == []  # every completed batch was committed


def test_a_failing_batch_does_not_redo_the_pending_one_before_it(
    kafka_settings: Settings, make_event: EventFactory
) -> None:
    events = [make_event(customer_id=f"F{i % 3}") for i in range(30)]
    produce_events(kafka_settings, iter(events))
    settings = kafka_settings.model_copy(update={"poll_max_records": 10})
    handled: list[str] = []
    completed: list[str] = []
    failures = iter([False, True])  # the second batch fails once, while the first one's effects are pending

    def handler(records: list) -> Completion:
        if next(failures, False):
            raise sqlite3.OperationalError("database is locked (simulated)")
        ids = [parse_purchase_event(r.value).event_id for r in records]
        handled.extend(ids)
        return lambda: completed.extend(ids)

    ConsumerLoop(
        settings,
        group_id=f"pending-ok-{settings.ingest_group}",
        topics=[settings.topic_purchases],
        handler=handler,
        client_id="pending-ok-test",
        until_caught_up=True,
    ).run()
    assert sorted(handled) == sorted(e.event_id for e in events)  # the first batch was completed, not redone
    assert sorted(completed) == sorted(handled)


def test_members_stop_once_the_partitions_they_hold_are_caught_up(
    kafka_settings: Settings,
    make_event: EventFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = [make_event(customer_id=f"M{i}") for i in range(1_000)]  # keys spread them over the partitions
    produce_events(kafka_settings, iter(events))
    settings = kafka_settings.model_copy(update={"poll_max_records": 10})
    handled: list[str] = []
    started = threading.Event()

    def slow(records: list) -> None:
        handled.extend(parse_purchase_event(r.value).event_id for r in records)
        started.set()
        time.sleep(0.1)  # the first member still holds every partition when the second one joins

    members = [
        ConsumerLoop(
            settings,
            group_id=f"members-{settings.ingest_group}",
            topics=[settings.topic_purchases],
            handler=slow,
            client_id=f"member-{n}",
            until_caught_up=True,
        )
        for n in range(2)
    ]
    threads = [threading.Thread(target=member.run, name=f"member-{n}") for n, member in enumerate(members)]
    with caplog.at_level(logging.ERROR, logger="xsell.consumer"):
        threads[0].start()
        assert started.wait(60), "the first member never got a batch"
        threads[1].start()
        for thread in threads:
            thread.join(180)
    assert not any(thread.is_alive() for thread in threads), "a member never caught up"
    assert set(handled) == {e.event_id for e in events}
    assert members[1].records_handled > 0, "the second member was given no partition"
    assert not [r for r in caplog.records if r.name == "xsell.consumer"], "a member failed a batch"


def test_the_loop_exports_its_lag_and_newest_record_per_group(
    kafka_settings: Settings, make_event: EventFactory
) -> None:
    produce_events(kafka_settings, iter([make_event(customer_id="L1") for _ in range(30)]))  # one key: one partition
    settings = kafka_settings.model_copy(update={"poll_max_records": 10})
    group = f"lag-{settings.ingest_group}"
    timestamps: list[int] = []

    def first_batch_only(records: list) -> None:
        timestamps.extend(r.timestamp for r in records)
        loop.stop()

    loop = ConsumerLoop(
        settings, group_id=group, topics=[settings.topic_purchases], handler=first_batch_only, client_id="lag-test"
    )
    loop.run()

    def sample(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"group": group})

    assert 0 < len(timestamps) <= 10
    assert sample("xsell_consumer_lag_records") == 30 - len(timestamps)
    assert sample("xsell_consumer_newest_record_seconds") == max(timestamps) / 1000

    ConsumerLoop(
        settings,
        group_id=group,
        topics=[settings.topic_purchases],
        handler=lambda records: timestamps.extend(r.timestamp for r in records),
        client_id="lag-test-2",
        until_caught_up=True,
    ).run()
    assert len(timestamps) == 30 and sample("xsell_consumer_lag_records") == 0
    assert sample("xsell_consumer_newest_record_seconds") == max(timestamps) / 1000 > time.time() - 600
