"""The lifecycle every Kafka consumer of xsell shares: start, poll-process-commit loop, graceful stop.

A service hands `ConsumerLoop` a batch handler. The loop polls a micro-batch, calls the handler,
and commits offsets only after the handler returned, so a crash re-delivers (at-least-once) and
never skips. An exception from the handler stops the loop without committing that batch: the
handler is the one decision point that dead-letters a record or gives up. SIGTERM and SIGINT stop
the loop after the current batch; offsets are committed and clients closed on the way out.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from types import FrameType
from typing import Protocol

from kafka import KafkaConsumer, TopicPartition

from xsell.metrics import BATCH_SECONDS, RECORDS_CONSUMED, serve_metrics
from xsell.settings import Settings

log = logging.getLogger(__name__)


class Record(Protocol):
    """What a handler reads of a consumed record (kafka-python's ConsumerRecord has these)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


BatchHandler = Callable[[list[Record]], None]


class ConsumerLoop:
    """Run `handler` over micro-batches of `topics` in consumer group `group_id` until stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str,
        topics: Sequence[str],
        handler: BatchHandler,
        client_id: str,
        until_caught_up: bool = False,
        poll_timeout_ms: int = 500,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.topics = list(topics)
        self.handler = handler
        self.client_id = client_id
        self.until_caught_up = until_caught_up
        self.poll_timeout_ms = poll_timeout_ms
        self._stop = threading.Event()
        self.records_handled = 0

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Ask the loop to finish the current batch, commit and exit."""
        if signum is not None:
            log.info("stop requested", extra={"signal": signal.Signals(signum).name, "service": self.client_id})
        self._stop.set()

    def run(self, exit_stack: ExitStack | None = None) -> int:
        """Install signal handlers, open the consumer, loop until stopped; return records handled."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            serve_metrics(self.settings.metrics_port, self.client_id)
        with ExitStack() as stack:
            if exit_stack is not None:
                stack.enter_context(exit_stack)
            consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=self.group_id,
                client_id=self.client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.settings.poll_max_records,
                session_timeout_ms=self.settings.consumer_session_timeout_ms,
                heartbeat_interval_ms=max(self.settings.consumer_session_timeout_ms // 3, 100),
                fetch_max_bytes=16 * 1024 * 1024,
                max_partition_fetch_bytes=8 * 1024 * 1024,
            )
            stack.callback(consumer.close, autocommit=False)
            consumer.subscribe(self.topics)
            log.info("consuming", extra={"service": self.client_id, "group": self.group_id, "topics": self.topics})
            targets: dict[TopicPartition, int] | None = None
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=self.poll_timeout_ms)
                batch = [record for records in polled.values() for record in records]
                if batch:
                    with BATCH_SECONDS.labels(self.client_id).time():
                        self.handler(batch)
                        consumer.commit()
                    self.records_handled += len(batch)
                    RECORDS_CONSUMED.labels(self.client_id).inc(len(batch))
                if self.until_caught_up:
                    targets = targets or self._end_offsets(consumer)
                    if targets and all(consumer.position(tp) >= end for tp, end in targets.items()):
                        log.info("caught up", extra={"service": self.client_id, "records": self.records_handled})
                        break
            log.info("stopped", extra={"service": self.client_id, "records": self.records_handled})
        return self.records_handled

    @staticmethod
    def _end_offsets(consumer: KafkaConsumer) -> dict[TopicPartition, int] | None:
        """End offsets of the assigned partitions, once the group has assigned some."""
        assignment = consumer.assignment()
        return consumer.end_offsets(list(assignment)) if assignment else None


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `condition` until true or timeout; True if it became true (for run-once jobs and tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()
