"""The real broker: started by the session fixture, topics with explicit partition counts, status."""

from __future__ import annotations

from infra.kafka.broker import KafkaBroker
from infra.kafka.topics import ensure_topics
from infra.stack import stack_status
from xsell.settings import Settings


def test_topics_have_explicit_partition_counts(kafka_settings: Settings) -> None:
    topics = ensure_topics(kafka_settings)  # second call: idempotent
    assert topics == {
        kafka_settings.topic_purchases: kafka_settings.purchases_partitions,
        kafka_settings.topic_purchases_dlq: kafka_settings.dlq_partitions,
        kafka_settings.topic_offers: kafka_settings.offers_partitions,
        kafka_settings.topic_offer_feedback: kafka_settings.feedback_partitions,
    }


def test_status_reports_pid_and_ports(broker_settings: Settings) -> None:
    rows = {row["component"]: row for row in stack_status(broker_settings)}
    assert set(rows) == {"kafka", "smtp-capture"}
    row = rows["kafka"]
    assert row["running"] is True
    assert row["pid"] == KafkaBroker(broker_settings).running_pid()
    assert row["address"] == broker_settings.kafka_bootstrap
    assert str(broker_settings.controller_port) in str(row["details"])


def test_start_is_idempotent_when_running(broker_settings: Settings) -> None:
    broker = KafkaBroker(broker_settings)
    pid = broker.running_pid()
    assert broker.start().pid == pid
