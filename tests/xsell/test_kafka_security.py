"""Kafka security settings as kafka-python arguments, settings that cannot work refused in one line,
and a broker's refusal told as one line (the real broker's refusal: tests/integration/test_kafka_security.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, SaslAuthenticationFailedError

from xsell.errors import UserError
from xsell.kafka_security import KafkaSecurityError, client_security, explain_refusals
from xsell.settings import Settings, SettingsError, load_settings


def sasl_ssl(tmp_path: Path, **overrides: object) -> Settings:
    """Settings of a SASL_SSL client with a CA file that exists."""
    cafile = tmp_path / "ca.pem"
    cafile.write_text("-----BEGIN CERTIFICATE-----\n")
    fields: dict[str, object] = {
        "home": tmp_path,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "xsell",
        "kafka_sasl_password": "kQ2v9wS7tYc1mN4p",
        "kafka_ssl_cafile": cafile,
    }
    return load_settings(**{**fields, **overrides})


def test_plaintext_is_the_default_and_adds_nothing_else(tmp_path: Path) -> None:
    assert client_security(load_settings(home=tmp_path)) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_every_argument_kafka_python_knows(tmp_path: Path) -> None:
    options = client_security(sasl_ssl(tmp_path))
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "xsell",
        "sasl_plain_password": "kQ2v9wS7tYc1mN4p",
        "ssl_cafile": str(tmp_path / "ca.pem"),
        "ssl_certfile": None,
        "ssl_keyfile": None,
        "ssl_check_hostname": True,
    }
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        assert set(options) <= set(client.DEFAULT_CONFIG), client.__name__


def test_the_password_is_not_in_the_settings_repr(tmp_path: Path) -> None:
    assert "kQ2v9wS7tYc1mN4p" not in repr(sasl_ssl(tmp_path))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_sasl_password": ""}, "set XSELL_KAFKA_SASL_USERNAME and XSELL_KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_username": ""}, "set XSELL_KAFKA_SASL_USERNAME and XSELL_KAFKA_SASL_PASSWORD"),
        ({"env": "production", "kafka_sasl_password": "changeme"}, "XSELL_KAFKA_SASL_PASSWORD is a placeholder"),
        ({"kafka_ssl_cafile": Path("/nonexistent/ca.pem")}, "XSELL_KAFKA_SSL_CAFILE /nonexistent/ca.pem is not a file"),
        ({"kafka_ssl_keyfile": Path(__file__)}, "XSELL_KAFKA_SSL_KEYFILE is set without XSELL_KAFKA_SSL_CERTFILE"),
    ],
)
def test_settings_that_cannot_work_are_one_line_naming_the_variables(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    settings = sasl_ssl(tmp_path).model_copy(update=overrides)
    with pytest.raises(KafkaSecurityError, match=message) as refused:
        client_security(settings)
    assert isinstance(refused.value, SettingsError) and isinstance(refused.value, UserError)
    assert "\n" not in str(refused.value)


def test_a_placeholder_password_passes_outside_production(tmp_path: Path) -> None:
    assert client_security(sasl_ssl(tmp_path, kafka_sasl_password="changeme"))["sasl_plain_password"] == "changeme"


def test_an_unknown_protocol_or_mechanism_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="kafka_security_protocol"):
        load_settings(home=tmp_path, kafka_security_protocol="TLS")
    with pytest.raises(SettingsError, match="kafka_sasl_mechanism"):
        load_settings(home=tmp_path, kafka_sasl_mechanism="GSSAPI")


def fail_connecting(settings: Settings, logged: Exception) -> None:
    """What kafka-python 3.0 does with a refusal: log it while it retries, then time out."""
    with explain_refusals(settings):
        logging.getLogger("kafka.net.manager").warning("Bootstrap connection to %s failed: %s", "bootstrap-0", logged)
        raise KafkaTimeoutError("Unable to bootstrap")


@pytest.mark.parametrize(
    "logged",
    [SaslAuthenticationFailedError("invalid credentials"), KafkaConnectionError("socket disconnected")],
    ids=["refused", "closed-before-the-answer"],
)
def test_a_refusal_of_the_credentials_names_them(tmp_path: Path, logged: Exception) -> None:
    with pytest.raises(KafkaSecurityError) as refused:
        fail_connecting(sasl_ssl(tmp_path), logged)
    assert str(refused.value) == (
        "Kafka at 127.0.0.1:9092 (SASL_SSL) did not authenticate user 'xsell' with SCRAM-SHA-512: "
        "check XSELL_KAFKA_SASL_USERNAME and XSELL_KAFKA_SASL_PASSWORD (and XSELL_KAFKA_SASL_MECHANISM)"
    )


def test_an_untrusted_certificate_names_the_ca_file(tmp_path: Path) -> None:
    failure = KafkaConnectionError("Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    with pytest.raises(KafkaSecurityError, match="set XSELL_KAFKA_SSL_CAFILE"):
        fail_connecting(sasl_ssl(tmp_path), failure)


@pytest.mark.parametrize(
    ("protocol", "logged"),
    [
        ("SASL_SSL", KafkaConnectionError("[Errno 111] Connection refused")),
        ("SSL", KafkaConnectionError("socket disconnected")),
    ],
    ids=["broker-down", "closed-without-sasl"],
)
def test_other_failures_are_raised_as_they_were(tmp_path: Path, protocol: str, logged: Exception) -> None:
    with pytest.raises(KafkaTimeoutError):
        fail_connecting(sasl_ssl(tmp_path, kafka_security_protocol=protocol), logged)
