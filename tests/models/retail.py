"""Small constructed purchase histories in the canonical line format, for unit tests."""

from __future__ import annotations

import pandas as pd

from xsell.history import LINE_COLUMNS

START = pd.Timestamp("2011-01-01", tz="UTC")

# product id -> (name, price); LANTERN and CANDLE are learned categories (3+ products each).
PRODUCTS = {
    "L1": ("WHITE METAL LANTERN", 4.0),
    "L2": ("LARGE WHITE METAL LANTERN", 6.0),  # 1.5x L1 and larger: an up-sell of L1
    "L3": ("GOLD METAL LANTERN", 40.0),  # 10x L1: outside the band
    "L4": ("BLUE METAL LANTERN", 4.2),  # 1.05x L1: below the band
    "C1": ("WHITE PILLAR CANDLE", 1.0),
    "C2": ("RED PILLAR CANDLE", 1.2),
    "C3": ("IVORY PILLAR CANDLE", 1.1),
    "M1": ("HOME SWEET HOME MUG", 2.0),
    "N1": ("PACK OF 20 PAPER NAPKINS", 0.85),  # the shop's other trade: two regulars' orders, several a day
    "POST": ("POSTAGE", 18.0),
}


def line(order: str, customer: str | None, product: str, day: float, quantity: int = 1) -> dict:
    """One canonical order line; a negative quantity is a returned line."""
    name, price = PRODUCTS[product]
    return {
        "order_id": order,
        "customer_id": customer,
        "product_id": product,
        "product_name": name,
        "category": None,
        "quantity": abs(quantity),
        "unit_price": price,
        "ordered_at": START + pd.Timedelta(days=day),
        "currency": "GBP",
        "channel": "web",
        "customer_email": None,
        "marketing_consent": False,
        "is_return": quantity < 0,
    }


def order(order_id: str, customer: str | None, day: float, *products: str) -> list[dict]:
    """The lines of one purchase order."""
    return [line(order_id, customer, p, day) for p in products]


def lines_frame(rows: list[dict]) -> pd.DataFrame:
    """Canonical lines (types as the readers return them), sorted by time."""
    frame = pd.DataFrame(rows, columns=list(LINE_COLUMNS))
    frame["product_name"] = frame["product_name"].astype("string")
    frame["category"] = frame["category"].astype("string")
    frame["quantity"] = frame["quantity"].astype("int64")
    frame["unit_price"] = frame["unit_price"].astype("float64")
    frame["is_return"] = frame["is_return"].astype(bool)
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], utc=True)
    return frame.sort_values(["ordered_at", "order_id"], kind="stable").reset_index(drop=True)


def store_history() -> pd.DataFrame:
    """Forty days of a small shop: lanterns are bought with candles, L2 sells well, L1 buyers often
    come back for a mug, one customer returned C3, postage appears on many orders, and two
    regulars buy napkins several times a day."""
    rows: list[dict] = []
    for i in range(12):
        customer = f"K{i}"
        rows += order(f"A{i}", customer, i, "L1", "C1", "POST")
        rows += order(f"B{i}", customer, i + 3, "M1")
        rows += order(f"D{i}", f"J{i}", i + 1, "L2", "C2")
    rows += order("E1", "K0", 20, "L3", "L4", "C3")
    rows += order("E2", "K1", 21, "L3", "C3")
    rows += order("E3", None, 22, "L3", "C3", "L4")
    rows += [line("R1", "K2", "C3", 23, quantity=-1)]
    rows += order("E4", "K2", 22, "C3", "L4")
    rows += order("E5", "K3", 30, "C3", "L4", "M1")
    # the rest of the shop's orders: what makes twelve lanterns-with-candles a pairing beyond doubt
    rows += [row for n in range(240) for row in order(f"N{n}", f"R{n % 2}", n * 0.15, "N1")]
    return lines_frame(rows)
