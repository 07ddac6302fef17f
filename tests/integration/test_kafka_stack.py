"""The real broker: started by the session fixture, topics with explicit partition counts, status,
consumer lag per group."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from infra.kafka.broker import KafkaBroker
from infra.kafka.lag import consumer_lag
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


def test_consumer_lag_counts_what_each_group_has_not_committed(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_purchases
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    for number in range(30):
        producer.send(topic, b"{}", partition=number % 3)  # 10 records on each of partitions 0-2, none on 3
    producer.flush()
    producer.close()
    committed = {0: 4, 1: 10}  # partition 2: nothing committed yet, so all its 10 records count
    group, idle = f"lag-{kafka_settings.ingest_group}", f"idle-{kafka_settings.ingest_group}"
    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.kafka_bootstrap, group_id=group)
    consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(offset, "", -1) for p, offset in committed.items()})
    consumer.close(autocommit=False)

    assert consumer_lag(kafka_settings, [group, idle]) == {group: 6 + 0 + 10 + 0, idle: None}
