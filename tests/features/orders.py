"""A small constructed order history for feature-store tests, and a home backfilled from it
(random customers and order times over 40 days; generated data: these tests target the store's
mechanics, not the model)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from features.backfill import backfill
from xsell.settings import Settings, load_settings

START = datetime(2011, 1, 3, tzinfo=UTC)


def write_orders(path: Path, seed: int = 3, customers: int = 6, orders: int = 60) -> pd.DataFrame:
    """Constructed canonical history: random customers and order times, some on the same day."""
    rng = random.Random(seed)
    rows = []
    for number in range(orders):
        at = START + timedelta(days=rng.randint(0, 40), hours=rng.randint(8, 18), minutes=rng.randint(0, 59))
        customer = f"C{rng.randint(1, customers)}"
        for product in rng.sample(["11", "12", "13", "14", "15"], k=rng.randint(1, 3)):
            rows.append(
                {
                    "order_id": f"O{number}",
                    "customer_id": customer,
                    "product_id": product,
                    "quantity": rng.randint(1, 4),
                    "unit_price": float(rng.choice([1.25, 2.5, 4.0])),
                    "ordered_at": at.isoformat(),
                    "product_name": f"TEST MUG {product}",
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


def backfilled_home(home: Path) -> tuple[Settings, pd.DataFrame]:
    """Settings of ``home`` after backfilling its feature store from ``write_orders``, and the orders."""
    orders = write_orders(home / "orders.csv")
    settings = load_settings(home=home)
    report = backfill(settings, home / "orders.csv")
    assert report.events == orders["order_id"].nunique()
    return settings, orders
