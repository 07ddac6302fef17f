"""The purchase-event contract: valid events round-trip, invalid ones are refused with a reason."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EventFactory
from xsell.events import EventRejected, EventType, RejectReason, event_id_for, parse_purchase_event


def test_event_round_trips_through_json(make_event: EventFactory) -> None:
    event = make_event()
    assert parse_purchase_event(event.to_bytes()) == event


def test_key_is_customer_id_and_anonymous_has_none(make_event: EventFactory) -> None:
    assert make_event(customer_id="17850").key() == b"17850"
    anonymous = make_event(customer_id=None)
    assert anonymous.key() is None
    assert anonymous.is_anonymous


def test_event_ids_are_deterministic_and_distinguish_cancellations() -> None:
    assert event_id_for("536365", EventType.PURCHASE) == event_id_for("536365", EventType.PURCHASE)
    assert event_id_for("536365", EventType.PURCHASE) != event_id_for("536365", EventType.ORDER_CANCELLED)


def test_occurred_at_is_normalized_to_utc(make_event: EventFactory) -> None:
    document = json.loads(make_event().to_bytes())
    document["occurred_at"] = "2011-01-01T10:00:00+02:00"
    event = parse_purchase_event(json.dumps(document).encode())
    assert event.occurred_at.utcoffset().total_seconds() == 0
    assert event.occurred_at.hour == 8


def _mutated(make_event: EventFactory, change: object) -> bytes:
    document = json.loads(make_event().to_bytes())
    change(document)  # type: ignore[operator]
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["lines"][0].update(unit_price=-1.0), RejectReason.INVALID_EVENT),
        (lambda d: d["lines"][0].update(unit_price="abc"), RejectReason.INVALID_EVENT),
        (lambda d: d["lines"][0].update(quantity="2"), RejectReason.INVALID_EVENT),
        (lambda d: d["lines"][0].update(quantity=0), RejectReason.INVALID_EVENT),
        (lambda d: d.pop("order_id"), RejectReason.INVALID_EVENT),
        (lambda d: d.update(lines=[]), RejectReason.INVALID_EVENT),
        (lambda d: d.update(occurred_at="2011-01-01T10:00:00"), RejectReason.INVALID_EVENT),
        (lambda d: d.update(currency="pounds"), RejectReason.INVALID_EVENT),
        (lambda d: d.update(surprise=1), RejectReason.INVALID_EVENT),
        (lambda d: d.update(schema_version=2), RejectReason.UNKNOWN_SCHEMA_VERSION),
        (lambda d: d.update(schema_version=True), RejectReason.UNKNOWN_SCHEMA_VERSION),
        (lambda d: d.pop("schema_version"), RejectReason.UNKNOWN_SCHEMA_VERSION),
    ],
)
def test_invalid_events_are_rejected_with_reason(
    make_event: EventFactory, change: object, reason: RejectReason
) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_purchase_event(_mutated(make_event, change))
    assert caught.value.reason == reason
    assert caught.value.detail


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", RejectReason.MALFORMED_JSON),
        (b"\xff\xfe\x00garbage", RejectReason.NOT_UTF8),
        (b"[1, 2]", RejectReason.NOT_AN_OBJECT),
        (b"[" * 100_000 + b"]" * 100_000, RejectReason.MALFORMED_JSON),
        (None, RejectReason.MALFORMED_JSON),
    ],
)
def test_unparseable_records_are_rejected_with_reason(raw: bytes | None, reason: RejectReason) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_purchase_event(raw)
    assert caught.value.reason == reason


def test_oversized_records_are_rejected_before_parsing(make_event: EventFactory) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_purchase_event(make_event().to_bytes() + b" " * 2048, max_bytes=1024)
    assert caught.value.reason == RejectReason.OVERSIZED


def test_order_total_sums_lines(make_event: EventFactory) -> None:
    assert make_event().total == pytest.approx(7.0)
