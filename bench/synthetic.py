"""A generated purchase history in the canonical layout, for benchmarks at sizes the shipped
sample does not reach (``bench.train``).

How it is generated (numpy, one seed, so a size always gives the same file):
  * products: ``products`` items in ``products // 40`` categories (category sizes drawn from a
    Dirichlet, so some categories are large); an item's popularity weight is Zipf (1 / rank^1.05,
    over a random ordering of the items); its price is log-normal around its category's
    log-normal price level (category: median 4, sigma 0.9; item within it: sigma 0.35);
  * customers: ``orders / 6.5`` customers, each of one of 60 latent kinds; a kind draws its
    categories from a Dirichlet over 12 categories of its own, a customer's order count is
    1 + Poisson(5.5), and 4 % of the orders are anonymous (no customer id);
  * orders: ``orders`` = ``lines / 9.2`` orders, each placed at a uniform time over one year
    (2025-01-01 to 2025-12-31, to the second); a basket has 1 + Poisson(8.2) lines; a line's
    category comes from the customer's kind (80 %) or from the global category mix (20 %), and its
    item from that category by popularity (an item may recur in an order, as on real invoices);
    ``products`` random lines are then given each item once, so that every item sells;
  * quantities 1 + Poisson(1.2); unit price = the item's price, 15 % off on 15 % of the lines
    (promotions) and 5 % up after a uniform per-item date (a price rise), to the cent, so an item
    has at most four prices; 1 % of the lines are returned in a cancellation order ("C" +
    order id) one to twenty days later.

The lines are written with a ``category`` column, so the catalog keeps the given categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2025-01-01", tz="UTC")
SPAN_S = 365 * 86_400
LINES_PER_ORDER = 9.2
ORDERS_PER_CUSTOMER = 6.5
KINDS = 60
CATEGORIES_PER_KIND = 12
ITEMS_PER_CATEGORY = 40


@dataclass(frozen=True)
class Size:
    """One generated size: order lines (before merging repeats) and products."""

    name: str
    lines: int
    products: int


SIZES = {
    "S": Size("S", 500_000, 4_000),
    "M": Size("M", 1_200_000, 60_000),
    "L": Size("L", 5_000_000, 100_000),
}


def _within(groups: np.ndarray, weights: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Members sorted by group and their cumulative in-group shares offset by the group number:
    ``searchsorted(keys, group + u)`` draws a member of ``group`` in proportion to its weight."""
    order = np.lexsort((np.arange(len(groups)), groups))
    g, w = groups[order], weights[order]
    totals = np.bincount(g, weights=w, minlength=n_groups)
    cumulative = np.cumsum(w) - np.repeat(np.cumsum(totals) - totals, np.bincount(g, minlength=n_groups))
    keys = g + cumulative / totals[g]
    keys[np.r_[g[1:] != g[:-1], True]] = g[np.r_[g[1:] != g[:-1], True]] + 1.0  # last of a group: exact end
    return order, keys


def _draw(order: np.ndarray, keys: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    at = np.searchsorted(keys, groups + rng.random(len(groups)), side="left")
    return order[np.minimum(at, len(order) - 1)]


def generate(lines: int, products: int, seed: int = 20261202) -> pd.DataFrame:
    """About ``lines`` order lines over ``products`` products (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_categories = max(2, products // ITEMS_PER_CATEGORY)
    category_share = rng.dirichlet(np.full(n_categories, 2.0))
    item_category = rng.choice(n_categories, size=products, p=category_share)
    popularity = 1.0 / np.arange(1, products + 1) ** 1.05
    item_weight = rng.permutation(popularity)
    category_level = rng.normal(np.log(4.0), 0.9, n_categories)
    item_price = np.exp(category_level[item_category] + rng.normal(0.0, 0.35, products))
    price_change = rng.integers(0, SPAN_S, products)  # the item's price rises 5 % from then on
    # categories that hold no item get no draws
    category_weight = np.bincount(item_category, weights=item_weight, minlength=n_categories)
    present = np.flatnonzero(category_weight > 0)

    kind_categories = rng.choice(
        present,
        size=(KINDS, CATEGORIES_PER_KIND),
        replace=True,
        p=category_weight[present] / category_weight[present].sum(),
    )
    kind_weights = rng.dirichlet(np.full(CATEGORIES_PER_KIND, 0.7), size=KINDS)

    n_orders = int(round(lines / LINES_PER_ORDER))
    n_customers = max(1, int(round(n_orders / ORDERS_PER_CUSTOMER)))
    counts = 1 + rng.poisson(ORDERS_PER_CUSTOMER - 1, n_customers)
    customer_of_order = np.repeat(np.arange(n_customers), counts)
    customer_of_order = customer_of_order[rng.permutation(len(customer_of_order))][:n_orders]
    n_orders = len(customer_of_order)
    customer_kind = rng.integers(0, KINDS, n_customers)
    anonymous = rng.random(n_orders) < 0.04
    order_time = np.sort(rng.integers(0, SPAN_S, n_orders))

    basket = 1 + rng.poisson(LINES_PER_ORDER - 1, n_orders)
    line_order = np.repeat(np.arange(n_orders), basket)
    kind = customer_kind[customer_of_order[line_order]]
    slot = _draw(*_within(np.repeat(np.arange(KINDS), CATEGORIES_PER_KIND), kind_weights.ravel(), KINDS), kind, rng)
    category = kind_categories.ravel()[slot]
    general = rng.random(len(line_order)) < 0.2
    category[general] = rng.choice(
        present, size=int(general.sum()), p=category_weight[present] / category_weight[present].sum()
    )
    item = _draw(*_within(item_category, item_weight, n_categories), category, rng)
    if len(item) >= products:  # every item sells at least once: the long tail is in the data
        item[rng.choice(len(item), size=products, replace=False)] = np.arange(products)
    order = line_order
    quantity = 1 + rng.poisson(1.2, len(order))
    promotion = np.where(rng.random(len(order)) < 0.15, 0.85, 1.0)
    raised = np.where(order_time[order] >= price_change[item], 1.05, 1.0)
    price = np.round(item_price[item] * promotion * raised, 2).clip(min=0.01)
    returned = rng.random(len(order)) < 0.01
    return_time = order_time[order[returned]] + rng.integers(86_400, 20 * 86_400, int(returned.sum()))

    order_ids = np.char.add("O", np.arange(n_orders).astype(str))
    customer_ids = np.char.add("U", customer_of_order.astype(str)).astype(object)
    customer_ids[anonymous] = None
    product_ids = np.char.add("P", np.char.zfill(np.arange(products).astype(str), 6))
    category_names = np.char.add("CATEGORY ", np.char.zfill(np.arange(n_categories).astype(str), 4))
    seconds = np.concatenate([order_time[order], return_time])
    every = np.concatenate([np.arange(len(order)), np.flatnonzero(returned)])
    ids = order_ids[order[every]]
    is_return = np.r_[np.zeros(len(order), dtype=bool), np.ones(int(returned.sum()), dtype=bool)]
    ids = np.where(is_return, np.char.add("C", ids), ids)
    keep = seconds < SPAN_S
    out = pd.DataFrame(
        {
            "order_id": ids,
            "customer_id": customer_ids[order[every]],
            "product_id": product_ids[item[every]],
            "product_name": np.char.add("ITEM ", product_ids[item[every]]),
            "category": category_names[item_category[item[every]]],
            "quantity": np.where(is_return, -quantity[every], quantity[every]),
            "unit_price": price[every],
            "ordered_at": START + pd.to_timedelta(seconds, unit="s"),
            "currency": "GBP",
            "channel": "web",
        }
    )[keep]
    return out.sort_values(["ordered_at", "order_id"], kind="stable").reset_index(drop=True)


def write(size: Size, directory: Path, seed: int = 20261202) -> Path:
    """The generated file of ``size`` in ``directory`` (written once, then reused)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"synthetic-{size.name}-{size.lines}-{size.products}-{seed}.parquet"
    if not path.exists():
        partial = path.with_suffix(".tmp")
        generate(size.lines, size.products, seed).to_parquet(partial, index=False)
        partial.rename(path)
    return path
