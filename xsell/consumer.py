"""The lifecycle every Kafka consumer of xsell shares: start, poll-process-commit loop, graceful stop.

A service hands `ConsumerLoop` a batch handler. The loop polls a micro-batch, calls the handler,
and commits offsets only after the handler returned, so a crash re-delivers (at-least-once) and
never skips. A handler whose effects complete in the background (records sent to Kafka, not yet
acknowledged) returns a `Completion`: the loop handles the next batch first and calls it before
it commits the batch's offsets, so waiting for the broker's acknowledgement overlaps useful work
instead of adding to every cycle. Commits are asynchronous (a synchronous one cost a broker round
trip per batch, a third of a small batch's time): the loop remembers the offsets of the batches it
handled and commits them without waiting; a commit that fails is covered by the next one, and the
handled offsets are committed synchronously on the way out. A crash or a rebalance can therefore
re-deliver a few more batches, which effects keyed by event id absorb.

A failure of the outside world (`RETRYABLE_ERRORS`: broker, a store, the disk) backs off, rewinds
to the last handled offsets and retries the batch, so a restarting broker or an unreadable store
makes events wait, never skips them. Any other exception from the handler stops the loop without
committing that batch: the handler is the one decision point that dead-letters a record or gives
up. SIGTERM and SIGINT stop the loop after the current batch; offsets are committed and clients
closed on the way out. The consumer connects as `xsell.kafka_security` says; a broker that refuses
its credentials or certificate ends the loop with one line naming the variables to fix.

After every poll the loop exports how far its group is behind (`xsell_consumer_lag_records`: the
records on its partitions beyond its position) and the Kafka timestamp of the newest record it
handled (`xsell_consumer_newest_record_seconds`), both labelled by group.
"""

from __future__ import annotations

import gc
import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from types import FrameType
from typing import Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError

from xsell.kafka_security import client_security, explain_refusals
from xsell.metrics import BATCH_SECONDS, CONSUMER_LAG, CONSUMER_NEWEST_RECORD, RECORDS_CONSUMED, serve_metrics
from xsell.settings import Settings

log = logging.getLogger(__name__)
# Failures of the outside world (broker, a store, the disk): the loop backs off and retries the
# batch from the last handled offset. Anything else is a bug and stops the service (that batch is
# not committed).
RETRYABLE_ERRORS = (KafkaError, OSError, sqlite3.Error, DBAPIError)
MAX_BACKOFF_S = 30.0
COMMIT_TIMEOUT_MS = 10_000  # a synchronous commit gives up after this (the broker may be down)


class Record(Protocol):
    """What a handler reads of a consumed record (kafka-python's ConsumerRecord has these)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


Completion = Callable[[], None]  # waits for a handled batch's effects; raises if one failed
BatchHandler = Callable[[list[Record]], Completion | None]
Offsets = dict[TopicPartition, OffsetAndMetadata]


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
        self._targets: dict[TopicPartition, int] = {}  # end offsets when each partition was first held
        self._handled: Offsets = {}  # next offset after the handled (and completed) batches
        self._pending: tuple[Completion, Offsets] | None = None  # the last batch, its effects in flight
        self._newest_ms = 0  # Kafka timestamp of the newest record handled
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
            settle_heap(self.settings.gc_young_threshold)  # a service process: tune its collector
        with ExitStack() as stack:
            if exit_stack is not None:
                stack.enter_context(exit_stack)
            with explain_refusals(self.settings):
                consumer = KafkaConsumer(
                    bootstrap_servers=self.settings.kafka_bootstrap,
                    group_id=self.group_id,
                    client_id=self.client_id,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_poll_records=self.settings.poll_max_records,
                    session_timeout_ms=self.settings.consumer_session_timeout_ms,
                    heartbeat_interval_ms=max(self.settings.consumer_session_timeout_ms // 3, 100),
                    fetch_min_bytes=self.settings.fetch_min_bytes,
                    fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
                    fetch_max_bytes=16 * 1024 * 1024,
                    max_partition_fetch_bytes=8 * 1024 * 1024,
                    **client_security(self.settings),
                )
            stack.callback(consumer.close, autocommit=False)
            stack.callback(self._commit_handled, consumer)
            consumer.subscribe(self.topics, listener=_OnRevoke(self._partitions_revoked))
            log.info("consuming", extra={"service": self.client_id, "group": self.group_id, "topics": self.topics})
            rewind, backoff_s = False, 1.0
            while not self._stop.is_set():
                try:
                    if rewind:
                        self._rewind(consumer)
                        rewind = False
                    if self._poll_once(consumer) and self.until_caught_up:
                        break
                    backoff_s = 1.0
                except RETRYABLE_ERRORS as error:
                    # broker restarting, a store unreadable, a disk full: wait, go back to the last
                    # committed offsets and retry the batch; nothing is skipped, nothing half-done
                    log.error(
                        "batch failed; retrying from the last commit",
                        extra={"service": self.client_id, "error": repr(error)[:300], "retry_in_s": backoff_s},
                    )
                    rewind = True
                    self._stop.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            log.info("stopped", extra={"service": self.client_id, "records": self.records_handled})
        return self.records_handled

    def _poll_once(self, consumer: KafkaConsumer) -> bool:
        """Poll, handle and commit one micro-batch; True when caught up (with `until_caught_up`)."""
        polled = consumer.poll(timeout_ms=self.poll_timeout_ms)
        CONSUMER_LAG.labels(self.group_id).set(records_behind(consumer))  # before the handler, which may fail
        batch = [record for records in polled.values() for record in records]
        if batch:
            with BATCH_SECONDS.labels(self.client_id).time():
                completion = self.handler(batch)
            offsets = {
                partition: OffsetAndMetadata(records[-1].offset + 1, "", -1) for partition, records in polled.items()
            }
            self._complete_pending()  # the previous batch's effects had this batch's time to land
            if completion is None:
                self._handled.update(offsets)
            else:
                self._pending = (completion, offsets)
            consumer.commit_async(offsets=dict(self._handled), callback=self._on_commit)
            self.records_handled += len(batch)
            RECORDS_CONSUMED.labels(self.client_id).inc(len(batch))
            self._newest_ms = max(self._newest_ms, *(record.timestamp for record in batch))
            CONSUMER_NEWEST_RECORD.labels(self.group_id).set(self._newest_ms / 1000)
        elif self._pending is not None:
            self._complete_pending()
            consumer.commit_async(offsets=dict(self._handled), callback=self._on_commit)
        if not self.until_caught_up:
            return False
        assignment = consumer.assignment()  # what this member holds now: a rebalance moves partitions
        if not assignment:
            return False
        if new := [tp for tp in assignment if tp not in self._targets]:
            self._targets.update(consumer.end_offsets(new))
        if all(consumer.position(tp) >= self._targets[tp] for tp in assignment):
            log.info("caught up", extra={"service": self.client_id, "records": self.records_handled})
            return True
        return False

    def _complete_pending(self) -> None:
        """Wait for the pending batch's effects, then count its offsets as handled (a failure
        leaves them out: the batch is redone)."""
        if self._pending is None:
            return
        (completion, offsets), self._pending = self._pending, None
        completion()
        self._handled.update(offsets)

    def _settle_pending(self) -> None:
        """``_complete_pending`` outside the batch flow (before a rewind, on the way out): a
        failure is logged and only means that the pending batch is redone."""
        try:
            self._complete_pending()
        except RETRYABLE_ERRORS as error:
            log.warning(
                "pending batch failed; redoing it", extra={"service": self.client_id, "error": repr(error)[:300]}
            )

    def _rewind(self, consumer: KafkaConsumer) -> None:
        """Seek every assigned partition back to the end of its last handled batch (else its
        committed offset, else the start). A batch whose effects are still pending is completed
        first, so that a failure of the next batch does not redo it; it is redone if that fails."""
        self._settle_pending()
        for partition in consumer.assignment():
            handled = self._handled.get(partition)
            committed = handled.offset if handled is not None else consumer.committed(partition)
            if committed is None:
                consumer.seek_to_beginning(partition)
            else:
                consumer.seek(partition, committed)

    def _commit_handled(self, consumer: KafkaConsumer) -> None:
        """Complete the pending batch, commit the handled offsets and wait for the broker (on the
        way out)."""
        self._settle_pending()
        if not self._handled:
            return
        try:
            consumer.commit(offsets=dict(self._handled), timeout_ms=COMMIT_TIMEOUT_MS)
        except RETRYABLE_ERRORS as error:  # the batches come back to whoever owns the partitions next
            log.warning("commit failed", extra={"service": self.client_id, "error": repr(error)[:300]})

    def _partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Forget the handled offsets of partitions this member loses, so that a stale offset is
        never committed later (the listener runs on the client's IO thread, where a synchronous
        commit is not allowed; the next owner re-handles at most the batches not yet committed)."""
        pending = self._pending[1] if self._pending is not None else {}
        for partition in revoked:
            self._handled.pop(partition, None)
            pending.pop(partition, None)

    def _on_commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], result: object) -> None:
        if isinstance(result, Exception):  # the next batch's commit carries these offsets again
            log.warning("async commit failed", extra={"service": self.client_id, "error": repr(result)[:300]})


def records_behind(consumer: KafkaConsumer) -> int:
    """Records on the partitions `consumer` holds beyond its position: the sum of highwater minus
    position. Fetch responses carry the highwater, so this sends no request; a partition not
    fetched from yet counts from its first fetch."""
    behind = 0
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        position = None if highwater is None else consumer.position(partition, timeout_ms=0)
        if position is not None:
            behind += max(highwater - position, 0)
    return behind


def settle_heap(young_threshold: int) -> None:
    """Tune the garbage collector for a batch loop, once start-up is done.

    What exists by now (modules, the model, feature tables: hundreds of thousands of objects) lives
    as long as the process; `gc.freeze` takes it out of every later collection. A batch then
    allocates tens of thousands of short-lived objects (parsed events, decisions); with the default
    young threshold of 700 the collector walks them over and over while they are still in use
    (5 to 8% of the offer service's throughput, measured). 0 turns automatic collection off.
    """
    gc.collect()
    gc.freeze()
    if young_threshold == 0:
        gc.disable()
        return
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


# kafka-python ships no types, so the base is Any; subscribe() isinstance-checks it, hence a subclass
class _OnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls ``revoked`` with the partitions a rebalance is about to take away."""

    def __init__(self, revoked: Callable[[Sequence[TopicPartition]], None]) -> None:
        self.revoked = revoked

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Before the rebalance."""
        self.revoked(revoked)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Nothing to do: positions come from the group's committed offsets."""


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `condition` until true or timeout; True if it became true (for run-once jobs and tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()
