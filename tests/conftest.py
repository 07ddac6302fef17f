"""Fixtures every test may use: factories of valid events and of consumed-record look-alikes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from xsell.events import EventType, LineItem, PurchaseEvent, event_id_for


@dataclass(frozen=True)
class FakeRecord:
    """The fields of a consumed record the pure processing functions read (no Kafka involved)."""

    value: bytes | None
    key: bytes | None = None
    topic: str = "purchases"
    partition: int = 0
    offset: int = 0
    timestamp: int = 0
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


EventFactory = Callable[..., PurchaseEvent]


@pytest.fixture
def make_event() -> EventFactory:
    """Build a valid purchase event; keyword arguments override fields."""
    counter = iter(range(1_000_000))

    def build(**overrides: object) -> PurchaseEvent:
        number = next(counter)
        order_id = str(overrides.pop("order_id", f"T{number:06d}"))
        event_type = overrides.pop("event_type", EventType.PURCHASE)
        fields: dict[str, object] = {
            "event_id": event_id_for(order_id, event_type),  # type: ignore[arg-type]
            "event_type": event_type,
            "order_id": order_id,
            "customer_id": "C1",
            "occurred_at": datetime(2011, 1, 1, tzinfo=UTC) + timedelta(minutes=number),
            "lines": (LineItem(product_id="P1", name="MUG", quantity=2, unit_price=3.5),),
        }
        fields.update(overrides)
        return PurchaseEvent(**fields)  # type: ignore[arg-type]

    return build


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests under tests/integration/ and run them after the fast unit tests."""
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)
