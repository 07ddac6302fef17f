"""What ingestion saw: the counts `xsell run` and `xsell ingest` print at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from xsell.events import EventType, PurchaseEvent


@dataclass
class IngestSummary:
    """Orders, lines, customers, anonymous orders, cancellations, and dead letters by reason."""

    orders: int = 0
    lines: int = 0
    cancellations: int = 0
    anonymous_orders: int = 0
    revenue: float = 0.0
    customers: set[str] = field(default_factory=set)
    dead_lettered: Counter[str] = field(default_factory=Counter)

    def add_event(self, event: PurchaseEvent) -> None:
        """Count one valid event."""
        if event.event_type is EventType.ORDER_CANCELLED:
            self.cancellations += 1
            return
        self.orders += 1
        self.lines += len(event.lines)
        self.revenue += event.total
        if event.customer_id is None:
            self.anonymous_orders += 1
        else:
            self.customers.add(event.customer_id)

    def add_dead_letter(self, reason: str) -> None:
        """Count one dead-lettered record."""
        self.dead_lettered[reason] += 1

    @property
    def valid_events(self) -> int:
        """Events that passed validation."""
        return self.orders + self.cancellations

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "valid_events": self.valid_events,
            "orders": self.orders,
            "lines": self.lines,
            "customers": len(self.customers),
            "anonymous_orders": self.anonymous_orders,
            "cancellations": self.cancellations,
            "revenue": round(self.revenue, 2),
            "dead_lettered": sum(self.dead_lettered.values()),
            "dead_lettered_by_reason": dict(self.dead_lettered),
        }
