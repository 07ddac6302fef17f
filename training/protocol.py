"""The offline evaluation protocol: time-based split, evaluation triggers and training triggers.

An offer made after purchase P (customer c, time t) is good when c buys the offered product
within the follow-up horizon after t and had never bought it before. So:

* Split by time only: ``cutoff = max(ordered_at) - test_days``. Lines before the cutoff are the
  training period; nothing at or after it may shape a model, an index or a training label.
* Evaluation triggers: each identified customer's FIRST purchase order at or after the cutoff.
  Truth = products whose first-ever purchase by c (over the whole file, any order) falls in
  ``(t, t + horizon_days]``: never bought before t, not in the trigger order, no service codes.
  A purchase in another order at exactly t belongs to neither side (a split invoice).
  Triggers with empty truth are dropped and counted. ``label_end`` is the end of the data here,
  so the horizon of triggers in the last ``horizon_days`` is cut short by the end of the file.
* Training triggers (for learning to rank): for ``windows`` sub-cutoffs spaced by the horizon
  before the cutoff, each customer's first order in ``[sub_cutoff, sub_cutoff + horizon_days)``,
  labelled from purchases strictly before the main cutoff only.

Only purchase lines (``is_return`` False) count as purchases; returned lines are kept per trigger
(``returned``) so that candidates can exclude them. Anonymous orders never trigger offers.

A trigger table has one row per trigger: trigger_id, customer_id, order_id, at, window_cutoff,
label_end, basket, history (most recent first), returned, truth (tuples of product ids),
is_new_customer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.catalog import is_service_code

TRIGGER_COLUMNS = (
    "trigger_id",
    "customer_id",
    "order_id",
    "at",
    "window_cutoff",
    "label_end",
    "basket",
    "history",
    "returned",
    "truth",
    "is_new_customer",
)


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of the split and the triggers."""

    test_days: int = 60
    horizon_days: int = 30
    training_windows: int = 3


@dataclass
class TriggerSet:
    """Triggers with their truth, plus how many were dropped for an empty truth."""

    triggers: pd.DataFrame
    dropped_empty_truth: int
    cutoff: pd.Timestamp


def split_cutoff(lines: pd.DataFrame, test_days: int = 60) -> pd.Timestamp:
    """The time split: ``max(ordered_at) - test_days``; training lines are strictly before it."""
    if lines.empty:
        raise ValueError("no order lines: cannot place a cutoff")
    return lines["ordered_at"].max() - pd.Timedelta(days=test_days)


def training_lines(lines: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The lines (purchases and returns) strictly before the cutoff."""
    return lines[lines["ordered_at"] < cutoff]


def build_evaluation_triggers(lines: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int = 30) -> TriggerSet:
    """Each identified customer's first purchase order at/after the cutoff, with its truth."""
    orders = _first_orders(_purchases(lines), cutoff, None)
    orders["window_cutoff"] = cutoff
    orders["label_end"] = lines["ordered_at"].max() + pd.Timedelta(microseconds=1)
    return _with_context(lines, orders, horizon_days, cutoff)


def build_training_triggers(
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    horizon_days: int = 30,
    windows: int = 3,
    window_days: int | None = None,
    orders_per_customer: int = 1,
) -> TriggerSet:
    """Triggers inside the training period, for learning to rank.

    Sub-cutoffs ``cutoff - i * window_days`` for i = 1..windows (``window_days`` defaults to
    ``horizon_days``); for each, every identified customer's first ``orders_per_customer`` purchase
    orders in ``[sub_cutoff, sub_cutoff + window_days)``. Labels (truth, over ``horizon_days``)
    come from purchases strictly before ``cutoff``; nothing at or after it is read.
    """
    before = lines[lines["ordered_at"] < cutoff]
    purchases = _purchases(before)
    width = pd.Timedelta(days=window_days or horizon_days)
    frames = []
    for i in range(1, windows + 1):
        sub_cutoff = cutoff - i * width
        orders = _first_orders(purchases, sub_cutoff, sub_cutoff + width, orders_per_customer)
        orders["window_cutoff"] = sub_cutoff
        frames.append(orders)
    orders = pd.concat(frames, ignore_index=True) if frames else _first_orders(purchases, cutoff, cutoff)
    orders["label_end"] = cutoff
    return _with_context(before, orders, horizon_days, cutoff)


def _purchases(lines: pd.DataFrame) -> pd.DataFrame:
    """Identified customers' purchase lines of real products (no returns, no service codes)."""
    frame = lines[~lines["is_return"] & lines["customer_id"].notna()]
    service = frame["product_id"].map(_service_lookup(frame["product_id"]))
    return frame[~service][["order_id", "customer_id", "product_id", "ordered_at"]]


def _service_lookup(products: pd.Series) -> dict[str, bool]:
    return {p: is_service_code(p) for p in products.unique()}


def _first_orders(
    purchases: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp | None, per_customer: int = 1
) -> pd.DataFrame:
    """Per customer, the first ``per_customer`` orders with ordered_at in [start, end) (ties broken
    by order id)."""
    window = purchases[purchases["ordered_at"] >= start]
    if end is not None:
        window = window[window["ordered_at"] < end]
    orders = window.drop_duplicates(["customer_id", "order_id"]).sort_values(["ordered_at", "order_id"])
    first = orders.groupby("customer_id", sort=False).head(per_customer)[["customer_id", "order_id", "ordered_at"]]
    return first.rename(columns={"ordered_at": "at"}).reset_index(drop=True)


def _tuples_by(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """``frame[value]`` gathered into one tuple per ``frame[key]``, indexed by the key in sorted
    order, each tuple in the frame's row order: ``groupby(key)[value].agg(tuple)``, with one slice
    per group instead of a Python call per group."""
    ordered = frame.sort_values(key, kind="stable")
    keys, values = ordered[key].to_numpy(), ordered[value].to_numpy(dtype=object)
    if not len(keys):
        return pd.Series([], dtype=object)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return pd.Series([tuple(values[a:b]) for a, b in zip(starts, ends, strict=True)], index=keys[starts], dtype=object)


def _with_context(lines: pd.DataFrame, orders: pd.DataFrame, horizon_days: int, cutoff: pd.Timestamp) -> TriggerSet:
    """Add basket, history, returned and truth to trigger orders; drop those with empty truth."""
    purchases = _purchases(lines)
    orders = orders.copy()
    orders["trigger_id"] = (
        orders["customer_id"] + "@" + orders["order_id"] + "#" + (orders["window_cutoff"].dt.strftime("%Y%m%d"))
    )
    # lines are joined to triggers by an integer code of the customer, and only the lines of
    # customers with a trigger are joined at all
    customers = pd.Index(orders["customer_id"].unique())

    def of_trigger_customers(frame: pd.DataFrame) -> pd.DataFrame:
        code = customers.get_indexer(frame["customer_id"])
        return frame[code >= 0].assign(customer=code[code >= 0])

    keys = of_trigger_customers(orders[["trigger_id", "customer_id", "order_id", "at", "label_end"]])
    keys = keys.drop(columns="customer_id")

    basket = purchases[purchases["order_id"].isin(set(orders["order_id"]))]
    basket = of_trigger_customers(basket).merge(
        keys[["trigger_id", "order_id", "customer"]], on=["order_id", "customer"]
    )
    basket = _tuples_by(basket.drop_duplicates(["trigger_id", "product_id"]), "trigger_id", "product_id")

    # history by order time (an order's first line, as its event is stamped): the rule of
    # features.owned, which the offer service and batch scoring read from the fold state
    ordered = purchases.assign(order_at=purchases.groupby("order_id")["ordered_at"].transform("min"))
    ordered = of_trigger_customers(ordered)[["customer", "product_id", "order_at"]].drop_duplicates()
    per_customer = ordered.merge(keys[["trigger_id", "customer", "at"]], on="customer")
    before = per_customer[per_customer["order_at"] < per_customer["at"]]
    latest = before.groupby(["trigger_id", "product_id"])["order_at"].max().reset_index()
    latest = latest.sort_values(["trigger_id", "order_at", "product_id"], ascending=[True, False, True])
    history = _tuples_by(latest, "trigger_id", "product_id")

    bought = of_trigger_customers(purchases)
    first_bought = bought.groupby(["customer", "product_id"])["ordered_at"].min().rename("first_at").reset_index()
    firsts = first_bought.merge(keys[["trigger_id", "customer", "at", "label_end"]], on="customer")
    horizon_end = firsts["at"] + pd.Timedelta(days=horizon_days)
    in_window = (firsts["first_at"] > firsts["at"]) & (firsts["first_at"] <= horizon_end)
    in_window &= firsts["first_at"] < firsts["label_end"]
    truth = _tuples_by(firsts[in_window].sort_values(["trigger_id", "product_id"]), "trigger_id", "product_id")

    returned_lines = of_trigger_customers(lines[lines["is_return"] & lines["customer_id"].notna()])
    returns = returned_lines[["customer", "product_id", "ordered_at"]].merge(
        keys[["trigger_id", "customer", "at"]], on="customer"
    )
    returned = _tuples_by(
        returns[returns["ordered_at"] < returns["at"]].drop_duplicates(["trigger_id", "product_id"]),
        "trigger_id",
        "product_id",
    )

    empty: tuple[str, ...] = ()
    for name, values in (("basket", basket), ("history", history), ("returned", returned), ("truth", truth)):
        orders[name] = orders["trigger_id"].map(values).map(lambda v: v if isinstance(v, tuple) else empty)
    orders["is_new_customer"] = orders["history"].map(len) == 0
    keep = orders["truth"].map(len) > 0
    triggers = orders[keep].sort_values(["window_cutoff", "at", "trigger_id"]).reset_index(drop=True)
    return TriggerSet(triggers=triggers[list(TRIGGER_COLUMNS)], dropped_empty_truth=int((~keep).sum()), cutoff=cutoff)
