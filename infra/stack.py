"""The local stack behind `xsell stack up | down | status` (the Kafka broker, for now)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from infra.kafka.broker import BrokerStatus, KafkaBroker
from infra.kafka.topics import ensure_topics
from xsell.settings import Settings


@dataclass(frozen=True)
class StackReport:
    """What `stack_up` started and how long it took."""

    broker: BrokerStatus
    topics: dict[str, int]
    seconds: float


def stack_up(settings: Settings) -> StackReport:
    """Start the broker (idempotent) and create the topics."""
    started = time.monotonic()
    settings.home.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(settings).start()
    topics = ensure_topics(settings)
    return StackReport(broker=broker, topics=topics, seconds=time.monotonic() - started)


def stack_down(settings: Settings) -> list[str]:
    """Stop every running component; return the names of those stopped."""
    return ["kafka"] if KafkaBroker(settings).stop() else []


def stack_status(settings: Settings) -> list[dict[str, object]]:
    """One row per component: running, pid, address, details."""
    broker = KafkaBroker(settings).status()
    return [
        {
            "component": "kafka",
            "running": broker.running,
            "pid": broker.pid,
            "address": broker.bootstrap,
            "details": f"controller :{broker.controller_port}, Kafka {settings.kafka_version}, log {broker.log_file}",
        }
    ]
