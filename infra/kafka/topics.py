"""Create xsell's topics with explicit partition counts (idempotent)."""

from __future__ import annotations

import contextlib
import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from xsell.kafka_security import client_security
from xsell.settings import Settings

log = logging.getLogger(__name__)


def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    """Per-topic configs: the DLQ has its own (smaller) message size limit."""
    if topic == settings.topic_purchases_dlq:
        return {"max.message.bytes": str(settings.dlq_max_message_bytes)}
    return {}


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create every topic of `settings.topic_partitions` that is missing; return name -> partitions."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id="xsell-topics", **client_security(settings)
    )
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=count, replication_factor=1, topic_configs=topic_configs(settings, name))
            for name, count in settings.topic_partitions.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them between list and create
                admin.create_topics(missing)
            log.info("created topics %s", [t.name for t in missing])
        described = admin.describe_topics(list(settings.topic_partitions))
        return {t["name"]: len(t["partitions"]) for t in described}
    finally:
        admin.close()
