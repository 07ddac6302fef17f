"""Real services for integration tests: one Kafka broker per test session on free ports with a
temporary data dir (the jars cache is shared with `make run`), and per-test topics and groups."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from infra.kafka.broker import KafkaBroker, free_port
from infra.kafka.topics import ensure_topics
from tests.streams import own_groups, own_topics
from xsell.settings import Settings, load_settings

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def broker_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Start the real broker once for the whole run; stop it at the end (log tail on failure)."""
    home = tmp_path_factory.mktemp("xsell-home")
    settings = load_settings(
        home=home,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_jars_dir=load_settings().jars_dir,  # the cache `make run` fills; fetched once if missing
    )
    broker = KafkaBroker(settings)
    broker.start()
    yield settings
    broker.stop()


@pytest.fixture
def kafka_settings(broker_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Settings with this test's own topics and consumer groups, topics created."""
    suffix = f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
    settings = broker_settings.model_copy(
        update={
            **own_topics(suffix),
            **own_groups(suffix, "ingest"),
        }
    )
    ensure_topics(settings)
    return settings


@pytest.fixture
def read_topic(broker_settings: Settings) -> Callable[..., list]:
    """Read every record of a topic from the beginning (no group), until `expected` or a timeout."""

    def read(topic: str, expected: int | None = None, timeout_s: float = 15.0) -> list:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=broker_settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=int(timeout_s * 1000) if expected is None else 2000,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        records: list = []

        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                polled = consumer.poll(timeout_ms=500)
                records.extend(r for batch in polled.values() for r in batch)
                if expected is not None and len(records) >= expected:
                    # one more short poll to catch duplicates beyond `expected`
                    polled = consumer.poll(timeout_ms=1000)
                    records.extend(r for batch in polled.values() for r in batch)
                    break
        finally:
            consumer.close()
        return records

    return read


@pytest.fixture
def repo_root() -> Path:
    """The repository root (for CLI subprocess tests)."""
    return Path(__file__).resolve().parents[2]
