"""The purchase-event contract: what every stage reads from and writes to the `purchases` topic.

JSON on the wire, key = customer id (UTF-8; no key for anonymous orders). The schema is versioned
(`schema_version`); a consumer rejects versions it does not know instead of guessing.

Cancellation policy: real retail data has cancellations and returns (negative quantities, UCI
invoices starting with "C"). They are not purchases. They travel as their own event type,
`order_cancelled`, with positive quantities of the items returned, and never trigger an offer; the
feature store counts them into customer and product return rates. A cancellation is not netted
against an earlier order (the data does not link them).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION: Final = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
# uuid5 namespace of event ids: a replay of the same file yields the same ids.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f6c1e-2f43-4c8e-9a53-7d1f0e2b8a61")
# Bounds of one order line; the history readers reject rows beyond them (`bad_quantity`, `bad_price`).
MAX_LINE_QUANTITY = 1_000_000
MAX_UNIT_PRICE = 1_000_000


class EventType(StrEnum):
    """What happened to the order."""

    PURCHASE = "purchase"
    ORDER_CANCELLED = "order_cancelled"


class RejectReason(StrEnum):
    """Why a record on `purchases` was dead-lettered; stable names for dashboards and alerts."""

    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    INVALID_EVENT = "invalid_event"
    OVERSIZED = "oversized"


class EventRejected(ValueError):
    """A record that is not a valid purchase event; carries a stable reason and a readable detail."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def as_integer(value: object) -> object:
    """A JSON number with no fraction (2.0) as the integer it is (JSON Schema's "integer" admits
    it); anything else unchanged, for strict validation to judge (a "2" stays a string)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class LineItem(BaseModel):
    """One order line: a product, how many, at what unit price."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    product_id: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=512)
    quantity: int = Field(gt=0, le=MAX_LINE_QUANTITY)
    unit_price: float = Field(ge=0, le=MAX_UNIT_PRICE, allow_inf_nan=False)
    category: str | None = Field(default=None, max_length=128)

    @field_validator("quantity", mode="before")
    @classmethod
    def _integral_number(cls, value: object) -> object:
        return as_integer(value)


class PurchaseEvent(BaseModel):
    """A purchase (or its cancellation), as produced to `purchases`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=128)
    event_type: EventType = EventType.PURCHASE
    order_id: str = Field(min_length=1, max_length=64)
    customer_id: str | None = Field(default=None, min_length=1, max_length=64)
    occurred_at: AwareDatetime
    lines: tuple[LineItem, ...] = Field(min_length=1, max_length=2_000)
    currency: str = Field(default="GBP", pattern=r"^[A-Z]{3}$")
    customer_email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    marketing_consent: bool = False
    channel: str = Field(default="web", min_length=1, max_length=32)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: object) -> object:
        value = as_integer(value)
        if isinstance(value, bool) or not isinstance(value, int):  # strict Literal[1] lets `true` pass as 1
            raise ValueError("schema_version must be an integer")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-01:00: no such UTC time
            raise ValueError("timestamp is out of range once converted to UTC") from None

    @property
    def is_anonymous(self) -> bool:
        """True when the order has no known customer (no offers, product statistics only)."""
        return self.customer_id is None

    @property
    def total(self) -> float:
        """Order value: sum of quantity x unit price."""
        return sum(line.quantity * line.unit_price for line in self.lines)

    def key(self) -> bytes | None:
        """Kafka record key: the customer id, so one customer's events stay in order."""
        return self.customer_id.encode() if self.customer_id else None

    def to_bytes(self) -> bytes:
        """The JSON wire form."""
        return self.model_dump_json().encode()


def event_id_for(order_id: str, event_type: EventType) -> str:
    """Deterministic event id of an order's event (same file, same ids)."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{event_type}:{order_id}"))


def parse_purchase_event(raw: bytes | None, max_bytes: int = 512 * 1024) -> PurchaseEvent:
    """Parse and validate one record value; raise `EventRejected` with the reason if it is not valid."""
    if raw is None:
        raise EventRejected(RejectReason.MALFORMED_JSON, "record has no value (tombstone)")
    if len(raw) > max_bytes:
        raise EventRejected(RejectReason.OVERSIZED, f"{len(raw)} bytes > limit of {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EventRejected(RejectReason.NOT_UTF8, str(error)) from None
    invalid: ValidationError | None
    try:  # a valid event is parsed once; the checks below only find out why the others fail
        event = PurchaseEvent.model_validate_json(text)
    except ValidationError as error:
        invalid = error
    else:
        if "schema_version" in event.model_fields_set:
            return event
        invalid = None  # valid but unversioned: rejected below
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:  # ValueError: also integers longer than 4300 digits
        raise EventRejected(RejectReason.MALFORMED_JSON, str(error)[:300]) from None
    if not isinstance(document, dict):
        raise EventRejected(RejectReason.NOT_AN_OBJECT, f"top level is {type(document).__name__}, not an object")
    version = document.get("schema_version")
    # An int, not a bool or float; and checked before `in`, since a list or object is unhashable.
    if not isinstance(version, int) or isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise EventRejected(
            RejectReason.UNKNOWN_SCHEMA_VERSION,
            f"schema_version {version!r} not in {sorted(SUPPORTED_SCHEMA_VERSIONS)}",
        )
    assert invalid is not None, "a versioned document that validated was returned above"
    raise EventRejected(RejectReason.INVALID_EVENT, _summarize(invalid))


def _summarize(error: ValidationError) -> str:
    """A one-line, bounded summary of what failed validation (field path and message)."""
    parts = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors()[:5]]
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def digest(raw: bytes) -> str:
    """SHA-256 hex digest of a record value (identifies truncated originals in the DLQ)."""
    return hashlib.sha256(raw).hexdigest()


def valid_events(
    values: Iterable[bytes | None], max_bytes: int = 512 * 1024, positions: list[int] | None = None
) -> tuple[list[PurchaseEvent], int]:
    """Parse record values, keeping the valid events and counting the others; ``positions``, when
    given, receives the index in ``values`` of each kept event (to find its record again).

    For every stage that reads `purchases` after ingestion: ingestion alone dead-letters invalid
    records (with the reason), so later stages skip them instead of dead-lettering them again.
    """
    events: list[PurchaseEvent] = []
    skipped = 0
    for position, value in enumerate(values):
        try:
            events.append(parse_purchase_event(value, max_bytes))
        except EventRejected:
            skipped += 1
        else:
            if positions is not None:
                positions.append(position)
    return events, skipped
