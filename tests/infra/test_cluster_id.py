"""The KRaft cluster id handed to `StorageTool format -t`: never read as an option."""

from __future__ import annotations

import base64
import re

from infra.kafka.broker import new_cluster_id

URL_SAFE_22 = re.compile(r"[A-Za-z0-9_-]{22}")


def test_no_cluster_id_starts_with_a_dash_and_each_is_16_bytes_of_url_safe_base64() -> None:
    ids = [new_cluster_id() for _ in range(10_000)]
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    for cluster_id in ids:
        assert URL_SAFE_22.fullmatch(cluster_id), cluster_id
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert len(set(ids)) == len(ids)
