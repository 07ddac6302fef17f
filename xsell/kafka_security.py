"""How every Kafka client of xsell authenticates and encrypts: TLS and SASL settings as kafka-python
keyword arguments, and a broker's refusal of them as one line that names the variables to fix.

`client_security(settings)` goes into every `KafkaConsumer`, `KafkaProducer` and `KafkaAdminClient`
xsell creates (`XSELL_KAFKA_SECURITY_PROTOCOL`, `XSELL_KAFKA_SASL_*`, `XSELL_KAFKA_SSL_*`). It
refuses settings that cannot work (a SASL protocol without user or password, a CA file that is not
there, a placeholder password in production) before a client tries them.

kafka-python 3.0 does not raise a refusal where it happens: it logs it, retries until its
bootstrap timeout (30 s) and then raises a `KafkaTimeoutError` that does not say why.
`explain_refusals` reads the last connection failure from kafka-python's log records (WARNING and
above, which xsell's logging keeps) while a client connects, and raises `KafkaSecurityError`
instead: wrong credentials name `XSELL_KAFKA_SASL_USERNAME` and `XSELL_KAFKA_SASL_PASSWORD`, an
untrusted broker certificate names `XSELL_KAFKA_SSL_CAFILE`; any other failure is raised as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)

from xsell.errors import UserError
from xsell.settings import KNOWN_PLACEHOLDERS, Settings, SettingsError

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
CREDENTIALS = "XSELL_KAFKA_SASL_USERNAME and XSELL_KAFKA_SASL_PASSWORD"


class KafkaSecurityError(SettingsError, UserError):
    """Kafka security settings that cannot work, or that the broker refused; one line naming the
    variables to fix (a `SettingsError`, and a `UserError` the CLI prints without a traceback)."""


def client_security(settings: Settings) -> dict[str, object]:
    """The kafka-python keyword arguments that make a client connect as `settings` say:
    `security_protocol`, with SASL `sasl_mechanism`, `sasl_plain_username` and
    `sasl_plain_password`, with TLS `ssl_cafile` (None: the system's CAs), `ssl_certfile`,
    `ssl_keyfile` and `ssl_check_hostname`. Raises `KafkaSecurityError` for settings that cannot work."""
    check_kafka_security(settings)
    protocol = settings.kafka_security_protocol
    options: dict[str, object] = {"security_protocol": protocol}
    if protocol in SASL_PROTOCOLS:
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    if protocol in TLS_PROTOCOLS:
        files = (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        cafile, certfile, keyfile = (None if path is None else str(path) for path in files)
        options |= {"ssl_cafile": cafile, "ssl_certfile": certfile, "ssl_keyfile": keyfile, "ssl_check_hostname": True}
    return options


def check_kafka_security(settings: Settings) -> None:
    """Raise `KafkaSecurityError` when the security settings cannot work: a SASL protocol without
    user or password (or, in production, with a placeholder password), a TLS file that does not
    exist, or a client key without its certificate."""
    protocol = settings.kafka_security_protocol
    if protocol in SASL_PROTOCOLS:
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise KafkaSecurityError(f"XSELL_KAFKA_SECURITY_PROTOCOL is {protocol}: set {CREDENTIALS}")
        if settings.env == "production" and settings.kafka_sasl_password.strip().lower() in KNOWN_PLACEHOLDERS:
            raise KafkaSecurityError("XSELL_KAFKA_SASL_PASSWORD is a placeholder; set the broker user's real password")
    if protocol not in TLS_PROTOCOLS:
        return
    for path, variable in (
        (settings.kafka_ssl_cafile, "XSELL_KAFKA_SSL_CAFILE"),
        (settings.kafka_ssl_certfile, "XSELL_KAFKA_SSL_CERTFILE"),
        (settings.kafka_ssl_keyfile, "XSELL_KAFKA_SSL_KEYFILE"),
    ):
        if path is not None and not path.is_file():
            raise KafkaSecurityError(f"{variable} {path} is not a file; set it to a PEM file")
    if settings.kafka_ssl_keyfile is not None and settings.kafka_ssl_certfile is None:
        raise KafkaSecurityError("XSELL_KAFKA_SSL_KEYFILE is set without XSELL_KAFKA_SSL_CERTFILE; set both or neither")


@contextmanager
def explain_refusals(settings: Settings) -> Iterator[None]:
    """Around the creation of a kafka-python client (which connects): when it fails with a
    `KafkaError` after the broker refused its credentials, its SASL mechanism or its certificate,
    raise `KafkaSecurityError` saying which and naming the variables to fix."""
    watcher = _ConnectionFailures()
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(watcher)
    try:
        yield
    except KafkaError as error:
        explanation = None if watcher.last is None else _explain(watcher.last, settings)
        if explanation is None:
            raise
        raise KafkaSecurityError(explanation) from error
    finally:
        kafka_log.removeHandler(watcher)


class _ConnectionFailures(logging.Handler):
    """Keeps the last connection failure kafka-python logs (an exception among a record's arguments)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: KafkaError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Remember the record's connection failure, if it carries one."""
        for argument in record.args if isinstance(record.args, tuple) else ():
            if isinstance(
                argument, SaslAuthenticationFailedError | UnsupportedSaslMechanismError | KafkaConnectionError
            ):
                self.last = argument


def _explain(failure: KafkaError, settings: Settings) -> str | None:
    """One line: who refused what, and the variables to fix; None for a failure that is not a refusal.

    A broker closes the connection right after its answer to wrong SASL credentials, and
    kafka-python 3.0 drops an answer that arrives with the close: with SASL on, a connection closed
    after it was established (TLS included: a failed handshake is another error) and before the
    client was ready counts as that refusal."""
    where = f"Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_protocol})"
    sasl = settings.kafka_security_protocol in SASL_PROTOCOLS
    if isinstance(failure, SaslAuthenticationFailedError) or (sasl and "socket disconnected" in str(failure)):
        return (
            f"{where} did not authenticate user {settings.kafka_sasl_username!r} with "
            f"{settings.kafka_sasl_mechanism}: check {CREDENTIALS} (and XSELL_KAFKA_SASL_MECHANISM)"
        )
    if isinstance(failure, UnsupportedSaslMechanismError):
        return f"{where} does not offer SASL {settings.kafka_sasl_mechanism}: set XSELL_KAFKA_SASL_MECHANISM to one it does"
    if "CERTIFICATE_VERIFY_FAILED" in str(failure):
        trusted = settings.kafka_ssl_cafile or "the system's CAs"
        return (
            f"{where}: the broker's certificate failed verification against {trusted} ({failure}): "
            "set XSELL_KAFKA_SSL_CAFILE to the PEM file of the CA that signed it"
        )
    return None
