"""The one definition of every customer and product aggregate, as an incremental fold over events.

Backfill folds the whole purchase history through `FeatureFold` in time order; the streaming
pipeline folds each event from Kafka through the same code. So training data and online values
come from one definition, with no second hand-written copy of any aggregate.

The fold is idempotent by event id (an event already applied changes nothing) and every value it
emits is independent of the order in which different customers' events arrive: product windows
are measured back from the product's latest sale, "current price" is the price of the latest sale
by event time, and price percentiles are recomputed for every category a batch touched.

Feature values are snapshots "as of just after event e". They carry the timestamp of e plus
`SNAPSHOT_DELAY` so that a point-in-time lookup at the exact time of an order never sees that
order itself: a value at time t uses only orders strictly before t.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from xsell.events import EventType, PurchaseEvent

SNAPSHOT_DELAY = timedelta(microseconds=1)
POPULARITY_WINDOWS_DAYS = (7, 30, 90)
TOP_CATEGORIES = 3
DAY_S = 86_400.0


@dataclass
class CustomerState:
    """Running totals of one customer (JSON-serialisable)."""

    order_count: int = 0
    cancellation_count: int = 0
    lifetime_spend: float = 0.0
    units: int = 0
    returned_units: int = 0
    first_order_ts: float | None = None
    last_order_ts: float | None = None
    products: dict[str, float] = field(default_factory=dict)  # product -> time first bought
    last_bought: dict[str, float] = field(default_factory=dict)  # product -> time last bought
    category_spend: dict[str, float] = field(default_factory=dict)

    def features(self) -> dict[str, object]:
        """Feature values of `customer_stats_fv` (field names as in the feature view)."""
        total_category = sum(self.category_spend.values())
        ranked = sorted(self.category_spend.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "order_count": self.order_count,
            "lifetime_spend": round(self.lifetime_spend, 4),
            "avg_order_value": round(self.lifetime_spend / self.order_count, 4) if self.order_count else 0.0,
            "last_order_ts": float(self.last_order_ts or 0.0),
            "first_order_ts": float(self.first_order_ts or 0.0),
            "distinct_products": len(self.products),
            "avg_unit_price": round(self.lifetime_spend / self.units, 4) if self.units else 0.0,
            "return_rate": round(self.cancellation_count / (self.order_count + self.cancellation_count), 4)
            if self.order_count + self.cancellation_count
            else 0.0,
            "returned_units_rate": round(self.returned_units / self.units, 4) if self.units else 0.0,
            "top_categories": "|".join(c for c, _ in ranked[:TOP_CATEGORIES]),
            "category_affinity": json.dumps(
                {c: round(v / total_category, 4) for c, v in ranked[:20]} if total_category else {}
            ),
        }

    def to_json(self) -> dict[str, object]:
        """State as plain JSON types."""
        data = dict(self.__dict__)
        data["products"] = dict(sorted(self.products.items()))
        data["last_bought"] = dict(sorted(self.last_bought.items()))
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> CustomerState:
        """Inverse of `to_json`."""
        state = cls(**data)  # type: ignore[arg-type]
        if isinstance(state.products, list):  # state saved before first-bought times were kept
            state.products = dict.fromkeys(state.products, 0.0)
        return state


@dataclass
class ProductState:
    """Running totals of one product (JSON-serialisable)."""

    category: str | None = None
    units_sold: int = 0
    returned_units: int = 0
    orders: int = 0
    current_price: float = 0.0
    current_price_ts: float = 0.0
    last_sold_ts: float = 0.0
    price_lines: dict[str, int] = field(default_factory=dict)  # price (as text) -> order lines at it
    sale_ts: list[float] = field(default_factory=list)  # sorted sale times within the longest window
    buyer_orders: dict[str, int] = field(default_factory=dict)  # customer -> orders with the product
    _median: float | None = field(default=None, repr=False, compare=False)  # cache, not state
    _repeat_buyers: int | None = field(default=None, repr=False, compare=False)  # cache, not state

    @property
    def repeat_buyers(self) -> int:
        """Buyers with the product in two or more orders (counted once, then kept up to date)."""
        if self._repeat_buyers is None:
            self._repeat_buyers = sum(1 for n in self.buyer_orders.values() if n > 1)
        return self._repeat_buyers

    def add_buyer_order(self, customer_id: str) -> None:
        """One more order of the product by ``customer_id``."""
        orders = self.buyer_orders.get(customer_id, 0) + 1
        self.buyer_orders[customer_id] = orders
        if orders == 2 and self._repeat_buyers is not None:
            self._repeat_buyers += 1

    @property
    def median_price(self) -> float:
        """Median unit price over order lines (cached until the next sale)."""
        if self._median is None:
            self._median = 0.0
            prices = sorted((float(p), n) for p, n in self.price_lines.items())
            half, seen = sum(n for _, n in prices) / 2.0, 0
            for price, count in prices:
                seen += count
                if seen >= half:
                    self._median = price
                    break
        return self._median

    def features(self, price_percentile: float) -> dict[str, object]:
        """Feature values of `product_stats_fv`."""
        windows = {
            f"popularity_{days}d": len(self.sale_ts)
            - bisect.bisect_left(self.sale_ts, self.last_sold_ts - days * DAY_S)
            for days in POPULARITY_WINDOWS_DAYS
        }
        buyers = len(self.buyer_orders)
        return {
            "category": self.category or "",
            "current_price": self.current_price,
            "median_price": self.median_price,
            "price_percentile": round(price_percentile, 4),
            **windows,
            "total_orders": self.orders,
            "distinct_buyers": buyers,
            "repeat_purchase_rate": round(self.repeat_buyers / buyers, 4) if buyers else 0.0,
            "return_rate": round(self.returned_units / self.units_sold, 4) if self.units_sold else 0.0,
            "last_sold_ts": self.last_sold_ts,
        }

    def to_json(self) -> dict[str, object]:
        """State as plain JSON types."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ProductState:
        """Inverse of `to_json`."""
        return cls(**data)  # type: ignore[arg-type]


@dataclass
class FoldOutput:
    """Feature snapshots emitted by one batch: rows ready for the offline store and a push."""

    customer_rows: list[dict[str, object]]
    product_rows: list[dict[str, object]]
    applied: list[str]  # event ids newly applied
    skipped_duplicates: int
    moved_percentiles: list[str] = field(default_factory=list)  # products whose price percentile moved


def _row_time(row: dict[str, object]) -> datetime:
    """The `event_timestamp` of a feature row (every row is built with a datetime stamp)."""
    stamp = row["event_timestamp"]
    assert isinstance(stamp, datetime)
    return stamp


class FeatureFold:
    """All customer and product states plus the ids of applied events."""

    def __init__(self, categories: dict[str, str | None] | None = None) -> None:
        self.customers: dict[str, CustomerState] = {}
        self.products: dict[str, ProductState] = {}
        self.applied: set[str] = set()
        self.categories = categories or {}  # product_id -> category, from the product catalog
        self._percentiles: dict[str, float] = {}
        self._category_members: dict[str, set[str]] = {}
        self._priced: dict[str, list[str]] = {}  # category -> its members with a price (a cache)
        # feature values of the last row emitted per entity (for `changed_only`; not state: after a
        # restore the first row of every entity is emitted again, which is never wrong)
        self._emitted: dict[tuple[str, object], tuple[object, ...]] = {}

    def apply(
        self, events: Iterable[PurchaseEvent], snapshot_every_event: bool = True, changed_only: bool = False
    ) -> FoldOutput:
        """Fold a batch of events in; return the snapshots of what changed.

        With `snapshot_every_event` each event emits its own customer/product rows (training
        history); otherwise one row per touched entity at the batch end (online freshness).
        With `changed_only` a row is left out when its feature values equal those of the last row
        this fold emitted for the entity (backfill: a point-in-time lookup finds the same values in
        the earlier row). The entity state still changed, so callers that save state by the rows
        they get (the streaming pipeline) must not ask for it.
        """
        customer_rows: list[dict[str, object]] = []
        product_rows: list[dict[str, object]] = []
        applied: list[str] = []
        duplicates = 0
        touched_customers: dict[str, datetime] = {}
        touched_products: dict[str, datetime] = {}
        touched_categories: set[str] = set()
        for event in events:
            if event.event_id in self.applied:
                duplicates += 1
                continue
            self.applied.add(event.event_id)
            applied.append(event.event_id)
            products = self._apply_event(event)
            stamp = event.occurred_at + SNAPSHOT_DELAY
            if event.customer_id is not None:
                touched_customers[event.customer_id] = max(stamp, touched_customers.get(event.customer_id, stamp))
            for product_id in products:
                touched_products[product_id] = max(stamp, touched_products.get(product_id, stamp))
                if category := self.products[product_id].category:
                    touched_categories.add(category)
            if snapshot_every_event:
                if event.customer_id is not None:
                    customer_rows.append(self._customer_row(event.customer_id, stamp))
                product_rows.extend(self._product_row(p, stamp) for p in products)
        if not snapshot_every_event:
            customer_rows = [self._customer_row(c, ts) for c, ts in touched_customers.items()]
            product_rows = [self._product_row(p, ts) for p, ts in touched_products.items()]
        moved: list[str] = []
        product_rows.extend(self._refresh_percentiles(touched_categories, touched_products, changed_only, moved))
        # one row per (product, time): a refreshed percentile can land on the stamp of the batch's
        # last sale; two rows with one timestamp would make point-in-time reads pick either at random
        product_rows = list({(r["product_id"], r["event_timestamp"]): r for r in product_rows}.values())
        if changed_only:
            customer_rows = self._changed(customer_rows, "customer_id")
            product_rows = self._changed(product_rows, "product_id")
        return FoldOutput(customer_rows, product_rows, applied, duplicates, moved)

    def _changed(self, rows: list[dict[str, object]], key: str) -> list[dict[str, object]]:
        """The rows (in time order) whose feature values differ from the entity's last emitted row."""
        kept = []
        for row in sorted(rows, key=_row_time):
            # every row starts with its key and event_timestamp (``_customer_row``, ``_product_row``)
            values = tuple(itertools.islice(row.values(), 2, None))
            entity = (key, row[key])
            if self._emitted.get(entity) != values:
                self._emitted[entity] = values
                kept.append(row)
        return kept

    # -- internals ----------------------------------------------------------------------------
    def _apply_event(self, event: PurchaseEvent) -> list[str]:
        ts = event.occurred_at.timestamp()
        cancelled = event.event_type is EventType.ORDER_CANCELLED
        customer = self.customers.setdefault(event.customer_id, CustomerState()) if event.customer_id else None
        if customer is not None:
            if cancelled:
                customer.cancellation_count += 1
            else:
                customer.order_count += 1
                customer.first_order_ts = min(ts, customer.first_order_ts or ts)
                customer.last_order_ts = max(ts, customer.last_order_ts or ts)
        touched: list[str] = []
        for line in event.lines:
            product = self.products.get(line.product_id)
            if product is None:
                product = self.products[line.product_id] = ProductState(
                    category=line.category or self.categories.get(line.product_id)
                )
                if product.category:
                    self._category_members.setdefault(product.category, set()).add(line.product_id)
            touched.append(line.product_id)
            value = line.quantity * line.unit_price
            if cancelled:
                product.returned_units += line.quantity
                if customer is not None:
                    customer.returned_units += line.quantity
                continue
            product.units_sold += line.quantity
            product.orders += 1
            key = f"{line.unit_price:.4f}"
            if not product.price_lines and product.category:
                self._priced.pop(product.category, None)  # a new priced member of its category
            product.price_lines[key] = product.price_lines.get(key, 0) + 1
            product._median = None
            # latest sale wins; on a tie the higher price, so the result never depends on arrival order
            if (ts, line.unit_price) >= (product.current_price_ts, product.current_price):
                product.current_price, product.current_price_ts = line.unit_price, ts
            product.last_sold_ts = max(product.last_sold_ts, ts)
            bisect.insort(product.sale_ts, ts)
            horizon = product.last_sold_ts - max(POPULARITY_WINDOWS_DAYS) * DAY_S
            del product.sale_ts[: bisect.bisect_left(product.sale_ts, horizon)]
            if event.customer_id is not None and customer is not None:
                product.add_buyer_order(event.customer_id)
                customer.lifetime_spend += value
                customer.units += line.quantity
                customer.products[line.product_id] = min(ts, customer.products.get(line.product_id, ts))
                customer.last_bought[line.product_id] = max(ts, customer.last_bought.get(line.product_id, ts))
                if product.category:
                    customer.category_spend[product.category] = (
                        customer.category_spend.get(product.category, 0.0) + value
                    )
        return list(dict.fromkeys(touched))

    def snapshots_for(self, events: Iterable[PurchaseEvent]) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """Current customer and product snapshots of the entities these events touch (for
        re-pushing after a restart: values pushed again are the same values)."""
        customers: dict[str, datetime] = {}
        products: dict[str, datetime] = {}
        for event in events:
            stamp = event.occurred_at + SNAPSHOT_DELAY
            if event.customer_id in self.customers:
                customers[event.customer_id] = max(stamp, customers.get(event.customer_id, stamp))
            for line in event.lines:
                if line.product_id in self.products:
                    products[line.product_id] = max(stamp, products.get(line.product_id, stamp))
        return (
            [self._customer_row(c, ts) for c, ts in customers.items()],
            [self._product_row(p, ts) for p, ts in products.items()],
        )

    def _customer_row(self, customer_id: str, stamp: datetime) -> dict[str, object]:
        return {"customer_id": customer_id, "event_timestamp": stamp, **self.customers[customer_id].features()}

    def _product_row(self, product_id: str, stamp: datetime) -> dict[str, object]:
        state = self.products[product_id]
        percentile = self._percentiles.get(product_id, 0.5)
        return {"product_id": product_id, "event_timestamp": stamp, **state.features(percentile)}

    def _refresh_percentiles(
        self,
        categories: set[str],
        touched: dict[str, datetime],
        changed_only: bool = False,
        moved: list[str] | None = None,
    ) -> list[dict[str, object]]:
        """Recompute price percentiles in touched categories; rows for products whose value moved
        (with `changed_only`, of an untouched product only when its served, rounded value moved:
        nothing else of it changed since its last row). The products whose value moved are added
        to ``moved``."""
        if not categories:
            return []
        batch_time = max(touched.values())
        rows = []
        for category in categories:
            product_ids = self._priced_members(category)
            if not product_ids:
                continue
            prices = np.fromiter((self.products[p].median_price for p in product_ids), float, len(product_ids))
            ordered = np.sort(prices)
            # mid-rank percentile: share of the category priced below, ties counted half
            below = np.searchsorted(ordered, prices, side="left")
            equal = np.searchsorted(ordered, prices, side="right") - below
            values = (below + 0.5 * equal) / len(prices)
            before = np.fromiter((self._percentiles.get(p, -1.0) for p in product_ids), float, len(product_ids))
            for at in np.flatnonzero(np.abs(before - values) > 1e-9):
                product_id, value, old = product_ids[at], float(values[at]), float(before[at])
                self._percentiles[product_id] = value
                if moved is not None:
                    moved.append(product_id)
                if changed_only and product_id not in touched and round(old, 4) == round(value, 4):
                    continue
                rows.append(self._product_row(product_id, max(touched.get(product_id, batch_time), batch_time)))
        return rows

    def _priced_members(self, category: str) -> list[str]:
        """The category's products that have a price, sorted by id (cached until one more has)."""
        members = self._priced.get(category)
        if members is None:
            found = (p for p in self._category_members.get(category, ()) if self.products[p].price_lines)
            members = self._priced[category] = sorted(found)
        return members

    # -- persistence helpers ------------------------------------------------------------------
    def percentiles(self) -> dict[str, float]:
        """Current price percentile per product."""
        return dict(self._percentiles)

    def refresh(
        self,
        customers: Mapping[str, CustomerState | None],
        products: Mapping[str, ProductState | None],
        applied: Iterable[str],
        percentiles: Mapping[str, float] | None = None,
    ) -> None:
        """Take newer states of some entities (None: not known yet, dropped here so that folding
        creates it), their stored price percentiles, and event ids applied elsewhere (another
        instance sharing the state), keeping the category index and its caches right."""
        for customer_id, customer in customers.items():
            if customer is None:
                self.customers.pop(customer_id, None)
            else:
                self.customers[customer_id] = customer
        for product_id, product in products.items():
            old = self.products.pop(product_id, None)
            for state in (old, product):
                if state is not None and state.category:
                    self._priced.pop(state.category, None)  # its members or their prices may have changed
            if old is not None and old.category and (product is None or product.category != old.category):
                self._category_members.get(old.category, set()).discard(product_id)
            if product is not None:
                self.products[product_id] = product
                if product.category:
                    self._category_members.setdefault(product.category, set()).add(product_id)
        self.applied.update(applied)
        self._percentiles.update(percentiles or {})

    def restore(
        self,
        customers: dict[str, CustomerState],
        products: dict[str, ProductState],
        applied: set[str],
        percentiles: dict[str, float],
    ) -> None:
        """Load persisted state (see `features.state`) and rebuild the category index."""
        self.customers, self.products, self.applied = customers, products, applied
        self._percentiles = dict(percentiles)
        self._category_members, self._priced = {}, {}
        for product_id, state in products.items():
            if state.category:
                self._category_members.setdefault(state.category, set()).add(product_id)
