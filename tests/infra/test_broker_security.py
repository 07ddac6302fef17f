"""The local broker serves PLAINTEXT on XSELL_KAFKA_BOOTSTRAP: settings for a secured broker are
refused before anything starts (its SASL_SSL listener for tests: tests/integration/test_kafka_security.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.kafka.broker import BrokerError, KafkaBroker
from xsell.settings import load_settings


def test_the_local_broker_refuses_a_secured_protocol_in_one_line(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, kafka_security_protocol="SASL_SSL")
    with pytest.raises(BrokerError, match="XSELL_KAFKA_SECURITY_PROTOCOL is SASL_SSL: unset it") as refused:
        KafkaBroker(settings).start()
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "kafka").exists()  # nothing written, nothing started
