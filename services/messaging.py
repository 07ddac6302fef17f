"""What the services do alike with Kafka: read a consumed record as one of the contracts' models
(`parse_record`), and produce without losing or duplicating a message (`durable_producer`)."""

from __future__ import annotations

import logging
from typing import TypeVar

from kafka import KafkaProducer
from pydantic import BaseModel, ValidationError

from xsell.consumer import Record
from xsell.kafka_security import client_security, explain_refusals
from xsell.settings import Settings

Model = TypeVar("Model", bound=BaseModel)


def parse_record(record: Record, model: type[Model], log: logging.Logger, message: str, **extra: str) -> Model | None:
    """The record's JSON value as `model`; if it is not one, None after a warning `message` on
    `log` with `extra`, the record's position and the number of errors (never its content)."""
    try:
        return model.model_validate_json(record.value or b"")
    except ValidationError as error:
        log.warning(
            message,
            extra={
                **extra,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "errors": error.error_count(),
            },
        )
        return None


def durable_producer(settings: Settings, client_id: str, *, retries: int = 10, **options: int) -> KafkaProducer:
    """A producer to `settings.kafka_bootstrap` that waits for every in-sync replica (acks=all) and
    retries without duplicating (idempotent); `options` (linger_ms, batch_size, ...) tune it. It
    connects as `xsell.kafka_security` says; a broker that refuses its credentials or certificate
    raises `KafkaSecurityError` (one line naming the variables to fix)."""
    with explain_refusals(settings):
        return KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=client_id,
            acks="all",
            retries=retries,
            enable_idempotence=True,
            **client_security(settings),
            **options,
        )
