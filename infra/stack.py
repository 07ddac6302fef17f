"""The local stack behind `xsell stack up | down | status`: the Kafka broker and, when SMTP points at
loopback, the capture SMTP server that stores each message as an .eml file under XSELL_HOME/mail."""

from __future__ import annotations

import time
from dataclasses import dataclass

from infra.kafka.broker import BrokerStatus, KafkaBroker
from infra.kafka.topics import ensure_topics
from infra.processes import ServiceProcesses
from infra.smtp_capture import capture_status, serves_locally, start_capture, stop_capture
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
    if serves_locally(settings):  # SMTP on loopback: run the capture server that stores .eml files
        start_capture(settings)
    return StackReport(broker=broker, topics=topics, seconds=time.monotonic() - started)


def stack_down(settings: Settings) -> list[str]:
    """Stop every running component; return the names of those stopped."""
    stopped = ServiceProcesses(settings).stop_all()  # services first: they commit and close cleanly
    stopped += ["smtp-capture"] if stop_capture(settings) else []
    return stopped + (["kafka"] if KafkaBroker(settings).stop() else [])


def stack_status(settings: Settings) -> list[dict[str, object]]:
    """One row per component: running, pid, address, details."""
    broker = KafkaBroker(settings).status()
    capture = capture_status(settings)
    services = [
        {"component": s.name, "running": s.running, "pid": s.pid, "address": "-", "details": f"log {s.log_file}"}
        for s in ServiceProcesses(settings).status()
    ]
    return services + [
        {
            "component": "kafka",
            "running": broker.running,
            "pid": broker.pid,
            "address": broker.bootstrap,
            "details": f"controller :{broker.controller_port}, Kafka {settings.kafka_version}, log {broker.log_file}",
        },
        {
            "component": "smtp-capture",
            "running": capture.running,
            "pid": capture.pid,
            "address": capture.address,
            "details": f"{capture.messages} messages in {capture.mail_dir}",
        },
    ]
