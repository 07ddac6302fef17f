"""How far each consumer group is behind, as the broker sees it (the ops dashboard shows it).

A group's lag is the number of records it has not committed yet on the topics it consumes (those
it has committed offsets on): per partition, the end offset minus its committed offset, or minus
the partition's first offset where it has committed nothing yet (xsell's consumers start from the
earliest record). Unlike the `xsell_consumer_lag_records` gauge of each member, this also counts a
group whose members are all down.
"""

from __future__ import annotations

from collections.abc import Sequence

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec

from xsell.kafka_security import client_security
from xsell.settings import Settings


def consumer_lag(settings: Settings, groups: Sequence[str], timeout_s: float = 2.0) -> dict[str, int | None]:
    """Records each group has yet to commit, by group; None for a group that never committed (it
    has not run, or its offsets expired).

    Raises `kafka.errors.KafkaError` when the broker does not answer within about `timeout_s`.
    """
    timeout_ms = max(1, int(timeout_s * 1000))
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="xsell-lag",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        **client_security(settings),
    )
    try:
        committed = admin.list_group_offsets(list(groups))
        topics = sorted({partition.topic for offsets in committed.values() for partition in offsets})
        if not topics:  # no group has committed anything yet
            return dict.fromkeys(groups, None)
        partitions = [
            TopicPartition(topic["name"], partition["partition_index"])
            for topic in admin.describe_topics(topics)
            for partition in topic["partitions"]
        ]
        ends = admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST), timeout_ms=timeout_ms)
        starts = admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.EARLIEST), timeout_ms=timeout_ms)
    finally:
        admin.close()
    lag: dict[str, int | None] = {}
    for group in groups:
        offsets = committed.get(group) or {}
        if not offsets:
            lag[group] = None
            continue
        consumed = {partition.topic for partition in offsets}
        lag[group] = sum(
            ends[tp].offset - max(offsets[tp].offset if tp in offsets else -1, starts[tp].offset)
            for tp in partitions
            if tp.topic in consumed
        )
    return lag
