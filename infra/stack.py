"""The local stack behind `xsell stack up | down | status`: the Kafka broker and, when SMTP points at
loopback, the capture SMTP server that stores each message as an .eml file under XSELL_HOME/mail."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from infra.kafka.broker import BrokerStatus, KafkaBroker
from infra.kafka.topics import ensure_topics
from infra.mlflow_server import MlflowServer
from infra.postgres import PostgresCluster
from infra.processes import ServiceProcesses
from infra.profiles import uses_local
from infra.redis import RedisServer
from infra.smtp_capture import capture_status, serves_locally, start_capture, stop_capture
from xsell.kafka_security import client_security
from xsell.settings import Settings


class ComponentStatus(TypedDict):
    """One row of `stack_status`."""

    component: str
    running: bool
    pid: int | None
    address: str
    details: str


@dataclass(frozen=True)
class StackReport:
    """What `stack_up` started and how long it took."""

    broker: BrokerStatus
    topics: dict[str, int]
    seconds: float


def stack_up(settings: Settings, create_schema: Callable[[str], None] | None = None) -> StackReport:
    """Start the broker (idempotent) and create the topics; in the production profile also the local
    Redis, PostgreSQL and MLflow server the settings point at. ``create_schema`` (the services'
    tables: the entry point passes ``services.schema.create_schema``) runs once on a PostgreSQL
    database, before several processes would race to create the tables."""
    started = time.monotonic()
    settings.home.mkdir(parents=True, exist_ok=True)
    local = uses_local(settings)
    if local["redis"]:
        RedisServer(settings).start()
    if local["postgres"] or local["mlflow"]:
        PostgresCluster(settings).start()
    if local["mlflow"]:
        MlflowServer(settings).start()
    if create_schema is not None and settings.db_url.startswith("postgresql"):
        create_schema(settings.db_url)
    broker = KafkaBroker(settings).start()
    topics = ensure_topics(settings)
    if topics.get(settings.topic_purchases, 0) < settings.purchases_partitions:
        topics = _grow_purchases(settings)
    if serves_locally(settings):  # SMTP on loopback: run the capture server that stores .eml files
        start_capture(settings)
    return StackReport(broker=broker, topics=topics, seconds=time.monotonic() - started)


def stack_down(settings: Settings) -> list[str]:
    """Stop every running component; return the names of those stopped."""
    stopped = ServiceProcesses(settings).stop_all()  # services first: they commit and close cleanly
    stopped += ["smtp-capture"] if stop_capture(settings) else []
    stopped += ["mlflow-server"] if MlflowServer(settings).stop() else []
    stopped += ["redis"] if RedisServer(settings).stop() else []
    stopped += ["postgres"] if PostgresCluster(settings).stop() else []
    return stopped + (["kafka"] if KafkaBroker(settings).stop() else [])


def _grow_purchases(settings: Settings) -> dict[str, int]:
    """Raise `purchases` to the configured partition count (a home first used by the local profile)."""
    from kafka import KafkaAdminClient  # noqa: PLC0415  (kafka-python is slow to import)
    from kafka.admin import NewPartitions  # noqa: PLC0415  (kafka-python is slow to import)

    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id="xsell-topics", **client_security(settings)
    )
    try:
        admin.create_partitions({settings.topic_purchases: NewPartitions(settings.purchases_partitions)})
    finally:
        admin.close()
    return ensure_topics(settings)


def stack_status(settings: Settings) -> list[ComponentStatus]:
    """One row per component: running, pid, address, details."""
    broker = KafkaBroker(settings).status()
    capture = capture_status(settings)
    redis, postgres, mlflow = (
        RedisServer(settings).status(),
        PostgresCluster(settings).status(),
        MlflowServer(settings).status(),
    )
    servers: list[ComponentStatus] = [
        {"component": name, "running": st.running, "pid": st.pid, "address": st.address, "details": details}
        for name, st, details in (
            ("redis", redis, f"data {redis.data_dir}, log {redis.log_file}"),
            ("postgres", postgres, f"data {postgres.data_dir}, databases mlflow, xsell"),
            ("mlflow-server", mlflow, f"backend {mlflow.backend}, log {mlflow.log_file}"),
        )
        if st.running
    ]
    services: list[ComponentStatus] = [
        {"component": s.name, "running": s.running, "pid": s.pid, "address": "-", "details": f"log {s.log_file}"}
        for s in ServiceProcesses(settings).status()
    ]
    return (
        services
        + servers
        + [
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
    )
