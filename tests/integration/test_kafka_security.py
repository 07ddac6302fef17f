"""Kafka security against a real broker: a SASL_SSL listener (a CA and a broker certificate made
here, SCRAM-SHA-512 users created when its storage is formatted) carries a purchase event through
xsell's own producer and consumer loop; a wrong password ends each of them, and `xsell ingest`,
with one line naming the variables to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.kafka.broker import KafkaBroker, Listener, free_port
from infra.kafka.topics import ensure_topics
from services.ingest.replay import produce_events
from services.messaging import durable_producer
from tests.conftest import EventFactory
from xsell.consumer import ConsumerLoop, Record
from xsell.errors import UserError
from xsell.events import PurchaseEvent, parse_purchase_event
from xsell.kafka_security import KafkaSecurityError
from xsell.settings import Settings, load_settings

USER = "xsell-ingest"
PASSWORD = "kQ2v9wS7-tYc1mN4pR8x"
WRONG_PASSWORD = "not-the-password"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def write_certificates(folder: Path) -> tuple[Path, Path]:
    """A CA and a broker certificate it signs (for 127.0.0.1 and localhost), valid for a day.
    Returns the CA's PEM file (for clients) and the broker's PEM keystore: its unencrypted
    private key, then its certificate chain."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, broker_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xsell test CA")])
    ca = certificate("xsell test CA", ca_key, ca_name, ca_key, ca=True)
    broker = certificate("localhost", broker_key, ca_name, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    ca_file, keystore = folder / "ca.pem", folder / "broker-keystore.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    keystore.write_bytes(
        broker_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + broker.public_bytes(pem)
        + ca.public_bytes(pem)
    )
    return ca_file, keystore


@pytest.fixture(scope="module")
def secure_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A broker of its own with a SASL_SSL listener (SCRAM-SHA-512, user USER), and the settings of a
    client that connects to that listener with the right password and the CA file; topics created."""
    home = tmp_path_factory.mktemp("xsell-secure")
    ca_file, keystore = write_certificates(home / "tls")
    plain = load_settings(
        home=home,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_security_protocol="PLAINTEXT",
        kafka_jars_dir=load_settings().jars_dir,  # the cache `make run` fills; fetched once if missing
    )
    listener = Listener(
        "SECURE",
        "SASL_SSL",
        free_port(),
        {
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "scram-sha-512.sasl.jaas.config": SCRAM_LOGIN,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
        },
    )
    broker = KafkaBroker(plain, [listener], scram_users={USER: PASSWORD})
    broker.start()
    try:
        settings = load_settings(
            home=home,
            kafka_bootstrap=f"127.0.0.1:{listener.port}",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username=USER,
            kafka_sasl_password=PASSWORD,
            kafka_ssl_cafile=ca_file,
        )
        ensure_topics(settings)  # the admin client over SASL_SSL too
        yield settings
    finally:
        broker.stop()


def consume(settings: Settings, group: str) -> list[PurchaseEvent]:
    """Every purchase event on `purchases`, read by xsell's consumer loop until caught up."""
    seen: list[PurchaseEvent] = []

    def handle(records: list[Record]) -> None:
        seen.extend(parse_purchase_event(record.value) for record in records)

    ConsumerLoop(
        settings,
        group_id=group,
        topics=[settings.topic_purchases],
        handler=handle,
        client_id=group,
        until_caught_up=True,
    ).run()
    return seen


def test_a_purchase_travels_over_sasl_ssl_with_the_right_password(
    secure_settings: Settings, make_event: EventFactory
) -> None:
    event = make_event(customer_id="S1")
    produce_events(secure_settings, iter([event]))  # through durable_producer
    assert consume(secure_settings, "secure-ingest") == [event]


def test_a_wrong_password_ends_producer_consumer_and_cli_in_one_line(
    secure_settings: Settings, repo_root: Path
) -> None:
    wrong = secure_settings.model_copy(update={"kafka_sasl_password": WRONG_PASSWORD})
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("XSELL_", "MLFLOW_"))},
        "XSELL_HOME": str(wrong.home),
        "XSELL_KAFKA_BOOTSTRAP": wrong.kafka_bootstrap,
        "XSELL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "XSELL_KAFKA_SASL_USERNAME": USER,
        "XSELL_KAFKA_SASL_PASSWORD": WRONG_PASSWORD,
        "XSELL_KAFKA_SSL_CAFILE": str(wrong.kafka_ssl_cafile),
        "XSELL_LOG_LEVEL": "WARNING",
    }
    cli = subprocess.Popen(  # runs while the in-process clients wait for their own refusals
        [sys.executable, "-m", "cli.main", "ingest", "--until-caught-up"],
        env=env,
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with pytest.raises(KafkaSecurityError) as producer_refused:
            durable_producer(wrong, "xsell-secure-test", bootstrap_timeout_ms=5000)
        with pytest.raises(KafkaSecurityError) as consumer_refused:
            consume(wrong, "secure-wrong-password")
        _, stderr = cli.communicate(timeout=120)
    finally:
        cli.kill()
    expected = (
        f"Kafka at {wrong.kafka_bootstrap} (SASL_SSL) did not authenticate user '{USER}' with SCRAM-SHA-512: "
        "check XSELL_KAFKA_SASL_USERNAME and XSELL_KAFKA_SASL_PASSWORD (and XSELL_KAFKA_SASL_MECHANISM)"
    )
    assert str(producer_refused.value) == str(consumer_refused.value) == expected
    assert isinstance(consumer_refused.value, UserError)
    assert WRONG_PASSWORD not in expected
    assert cli.returncode == 1
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == [f"error: {expected}"]
    assert "Traceback" not in stderr and WRONG_PASSWORD not in stderr
