"""The candidate index: item statistics and item-to-item neighbour lists learned from purchase
history before a point in time (``as_of``), versionable as a model artifact.

What it holds (all from purchase lines strictly before ``as_of``; service codes are not items):
  * ``products``: one row per item (its position is the item's index): product_id, name, category,
    head (its head noun, ``features.catalog.build_catalog``), median_price, orders, customers, recent_customers (distinct buyers in the last
    ``recent_days``), return_rate (returned lines / purchased lines), last_sold, offerable.
  * ``neighbours``: per source, a sparse item x item score matrix keeping the top
    ``neighbours`` per seed item:
      - ``basket``: same-order co-occurrence, score = confidence P(b in order | a in order),
        pairs below ``min_support`` orders dropped;
      - ``followup``: customers who bought a and then bought b for the first time within
        ``followup_days``, score = that count / customers of a;
      - ``itemknn``: cosine similarity of item columns of the customer x item matrix;
      - ``category``: complementary categories (another category bought in the same orders at
        a lift of ``min_complement_lift``, scored by P(b | a)) times the item's share of its
        category's recent buyers, for items with no pair history;
      - ``upsell``: same category, median price ratio in ``[upsell_min_ratio, upsell_max_ratio]``,
        at least ``upsell_min_customers`` buyers, return rate at most ``max_return_rate``;
        score = recent popularity.
  * ``cooccurrence``: the (pruned) same-order co-occurrence counts, for pair features.
  * ``kind_pairs``: the kinds bought together beyond doubt (``kind``, ``other``, both ways: the
    ``category`` source's complements), which back an item pairing's claim
    (``models.candidates``); None for an index saved without them.

``save(directory)`` writes parquet files and a ``manifest.json``; ``CandidateIndex.load`` reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from scipy import sparse, special

from features.catalog import build_catalog
from xsell.price_band import DEFAULT_PRICE_BAND, PriceBand

SOURCES = ("basket", "followup", "itemknn", "category", "upsell")
FORMAT_VERSION = 1
GRAM_BLOCK_PAIRS = 20_000_000  # products per block of an item x item matrix (bounds its memory)


@dataclass(frozen=True)
class IndexConfig:
    """Settings of the index build (none is tuned to one data set)."""

    neighbours: int = 100
    min_support: int = 2
    followup_days: int = 14
    recent_days: int = 30
    active_days: int = 90
    # the band's two ends stay two flat fields: manifests and MLflow params name them so
    upsell_min_ratio: float = DEFAULT_PRICE_BAND.min_ratio
    upsell_max_ratio: float = DEFAULT_PRICE_BAND.max_ratio
    upsell_min_customers: int = 3
    max_return_rate: float = 0.25
    complement_categories: int = 10
    min_complement_lift: float = 2.0  # a kind goes with another when bought with it twice as often as with any order
    max_complement_chance: float = 0.001  # ... beyond doubt (see _category_complements)
    items_per_category: int = 30

    @classmethod
    def with_price_band(cls, band: PriceBand) -> IndexConfig:
        """The defaults with ``band`` as the up-sell price band (the one the offer rules apply)."""
        return cls(upsell_min_ratio=band.min_ratio, upsell_max_ratio=band.max_ratio)


@dataclass
class CandidateIndex:
    """Item statistics and neighbour lists as of ``as_of``; see the module docstring."""

    config: IndexConfig
    as_of: pd.Timestamp
    products: pd.DataFrame
    neighbours: dict[str, sparse.csr_matrix]
    cooccurrence: sparse.csr_matrix
    orders: int
    kind_pairs: pd.DataFrame | None = None
    position: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.position = {p: i for i, p in enumerate(self.products["product_id"])}

    @property
    def size(self) -> int:
        """Number of items."""
        return len(self.products)

    @classmethod
    def build(cls, lines: pd.DataFrame, as_of: pd.Timestamp, config: IndexConfig | None = None) -> CandidateIndex:
        """Learn the index from the lines strictly before ``as_of`` (later lines are ignored)."""
        config = config or IndexConfig()
        before = lines[lines["ordered_at"] < as_of]
        catalog = (
            build_catalog(before)
            if len(before)
            else pd.DataFrame(columns=["product_id", "name", "category", "is_service"])
        )
        service = set(catalog.loc[catalog["is_service"].astype(bool), "product_id"])
        real = before[~before["product_id"].isin(service)]
        bought = real[~real["is_return"]]
        products = _product_table(bought, real[real["is_return"]], catalog, as_of, config)
        position = pd.Series(np.arange(len(products)), index=products["product_id"])
        item = position.reindex(bought["product_id"]).to_numpy()
        order_codes, order_ids = pd.factorize(bought["order_id"])
        x_orders = _binary(order_codes, item, len(order_ids), len(products))

        counts = _cooccurrence(x_orders, config.min_support)
        per_item_orders = products["orders"].to_numpy(dtype=np.float64)
        confidence = _scale_rows(counts, 1.0 / np.maximum(per_item_orders, 1))

        kinds = _kinds_together(x_orders, products, config)
        neighbours = {
            "basket": _top_k_rows(confidence, config.neighbours),
            "followup": _top_k_rows(_followup(bought, position, products, config), config.neighbours),
            "itemknn": _cosine(bought, position, len(products), config.neighbours),
            "category": _top_k_rows(_category_complements(kinds, products, config), config.neighbours),
            "upsell": _top_k_rows(_upsell(products, config), config.neighbours),
        }
        return cls(
            config=config,
            as_of=as_of,
            products=products,
            neighbours=neighbours,
            cooccurrence=counts.astype(np.float32).tocsr(),
            orders=len(order_ids),
            kind_pairs=kinds.pairs(),
        )

    def save(self, directory: Path | str) -> Path:
        """Write the index as parquet files plus ``manifest.json``; returns the directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.products.to_parquet(directory / "products.parquet", index=False)
        frames = [_to_frame(matrix).assign(source=name) for name, matrix in self.neighbours.items()]
        pd.concat(frames, ignore_index=True).to_parquet(directory / "neighbours.parquet", index=False)
        _to_frame(self.cooccurrence).to_parquet(directory / "cooccurrence.parquet", index=False)
        if self.kind_pairs is not None:
            self.kind_pairs.to_parquet(directory / "kind_pairs.parquet", index=False)
        manifest = {
            "format_version": FORMAT_VERSION,
            "as_of": self.as_of.isoformat(),
            "orders": self.orders,
            "items": self.size,
            "config": asdict(self.config),
            "neighbour_pairs": {name: int(m.nnz) for name, m in self.neighbours.items()},
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> CandidateIndex:
        """Read an index written by ``save``; refuses an unknown format version."""
        directory = Path(directory)
        manifest = json.loads((directory / "manifest.json").read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unknown candidate-index format {manifest.get('format_version')!r}")
        products = pd.read_parquet(directory / "products.parquet")
        n = len(products)
        pairs = pd.read_parquet(directory / "neighbours.parquet")
        neighbours = {name: _from_frame(pairs[pairs["source"] == name], n) for name in SOURCES}
        kinds = directory / "kind_pairs.parquet"
        return cls(
            config=IndexConfig(**manifest["config"]),
            as_of=pd.Timestamp(manifest["as_of"]),
            products=products,
            neighbours=neighbours,
            cooccurrence=_from_frame(pd.read_parquet(directory / "cooccurrence.parquet"), n),
            orders=int(manifest["orders"]),
            kind_pairs=pd.read_parquet(kinds) if kinds.exists() else None,
        )


def _product_table(
    bought: pd.DataFrame, returned: pd.DataFrame, catalog: pd.DataFrame, as_of: pd.Timestamp, config: IndexConfig
) -> pd.DataFrame:
    recent = bought[bought["ordered_at"] >= as_of - pd.Timedelta(days=config.recent_days)]
    grouped = bought.groupby("product_id")
    table = pd.DataFrame(
        {
            "median_price": grouped["unit_price"].median(),
            "orders": grouped["order_id"].nunique(),
            "customers": grouped["customer_id"].nunique(),
            "lines": grouped.size(),
            "last_sold": grouped["ordered_at"].max(),
        }
    )
    table["recent_customers"] = recent.groupby("product_id")["customer_id"].nunique().reindex(table.index).fillna(0)
    table["recent_orders"] = recent.groupby("product_id")["order_id"].nunique().reindex(table.index).fillna(0)
    returns = returned.groupby("product_id").size().reindex(table.index).fillna(0)
    table["return_rate"] = (returns / table["lines"]).clip(upper=1.0)
    info = catalog.set_index("product_id")[["name", "category", "head"]]
    table = table.join(info).reset_index().rename(columns={"index": "product_id"})
    active = table["last_sold"] >= as_of - pd.Timedelta(days=config.active_days)
    table["offerable"] = active & (table["return_rate"] <= config.max_return_rate)
    columns = [
        "product_id",
        "name",
        "category",
        "head",
        "median_price",
        "orders",
        "customers",
        "recent_customers",
        "recent_orders",
        "return_rate",
        "last_sold",
        "offerable",
    ]
    table = table[columns].sort_values("product_id").reset_index(drop=True)
    table["name"] = table["name"].astype("string")
    table["category"] = table["category"].astype("string")
    table["head"] = table["head"].astype("string")
    for column in ("orders", "customers", "recent_customers", "recent_orders"):
        table[column] = table[column].astype("int64")
    return table


def _binary(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_rows, n_cols))
    matrix.data[:] = 1.0  # duplicates were summed
    return matrix


def _gram_blocks(x: sparse.csr_matrix, budget: int = GRAM_BLOCK_PAIRS) -> Iterator[tuple[int, sparse.csr_matrix]]:
    """``x.T @ x`` (columns x columns) in blocks of rows, each holding about ``budget`` products at
    most (a block is at least one row): yields (first row, block). Memory stays that of one block
    whatever the size of the whole product."""
    xt = x.T.tocsr()
    row_sizes = np.diff(x.indptr).astype(np.int64)
    # per column, the products its row of xt @ x adds up: the sizes of the rows it occurs in
    cost = np.asarray(xt @ row_sizes.astype(np.float64)).ravel()
    start, n = 0, xt.shape[0]
    cumulative = np.cumsum(cost)
    while start < n:
        done = cumulative[start - 1] if start else 0.0
        stop = int(np.searchsorted(cumulative, done + budget, side="right"))
        stop = min(max(stop, start + 1), n)
        yield start, (xt[start:stop] @ x).tocsr()
        start = stop


def _block_rows(block: sparse.csr_matrix, start: int) -> np.ndarray:
    """The global row of every stored entry of a block starting at row ``start``."""
    return np.repeat(np.arange(start, start + block.shape[0], dtype=np.int64), np.diff(block.indptr))


def _drop_diagonal(block: sparse.csr_matrix, start: int) -> sparse.csr_matrix:
    block.data[block.indices == _block_rows(block, start)] = 0
    block.eliminate_zeros()
    return block


def _cooccurrence(x_orders: sparse.csr_matrix, min_support: int) -> sparse.csr_matrix:
    """Same-order pair counts (items x items, no diagonal), pairs below ``min_support`` dropped."""
    parts = []
    for start, block in _gram_blocks(x_orders):
        block = _drop_diagonal(block, start)
        block.data[block.data < min_support] = 0
        block.eliminate_zeros()
        parts.append(block)
    n = x_orders.shape[1]
    return sparse.vstack(parts, format="csr") if parts else sparse.csr_matrix((n, n), dtype=np.float32)


def _scale_rows(matrix: sparse.csr_matrix, scale: np.ndarray) -> sparse.csr_matrix:
    """``diags(scale) @ matrix`` (float64), without building the product."""
    rows = _block_rows(matrix, 0)
    return sparse.csr_matrix(
        (scale[rows] * matrix.data, matrix.indices.copy(), matrix.indptr.copy()), shape=matrix.shape
    )


def _cosine(bought: pd.DataFrame, position: pd.Series, n_items: int, k: int) -> sparse.csr_matrix:
    """Top ``k`` per item of the cosine similarity of item columns of the customer x item matrix,
    computed a block of items at a time."""
    known = bought[bought["customer_id"].notna()]
    customers, _ = pd.factorize(known["customer_id"])
    x = _binary(
        customers,
        position.reindex(known["product_id"]).to_numpy(),
        customers.max() + 1 if len(customers) else 0,
        n_items,
    )
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    inverse = (1.0 / np.maximum(norms, 1e-9)).astype(np.float32)
    parts = []
    for start, block in _gram_blocks(x):
        block = _drop_diagonal(block, start)
        # as diags(inverse) @ gram @ diags(inverse) computes it, in float32
        block.data = (inverse[_block_rows(block, start)] * block.data.astype(np.float32)) * inverse[block.indices]
        parts.append(_top_k_rows(block, k))
    if not parts:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    return sparse.vstack(parts, format="csr")


def _followup(
    bought: pd.DataFrame, position: pd.Series, products: pd.DataFrame, config: IndexConfig
) -> sparse.csr_matrix:
    """Counts of customers who bought a, then bought b for the first time within followup_days."""
    known = bought[bought["customer_id"].notna()]
    n_items = len(products)
    if known.empty:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    orders = known.drop_duplicates("order_id")[["order_id", "customer_id", "ordered_at"]].reset_index(drop=True)
    row_of = pd.Series(np.arange(len(orders)), index=orders["order_id"])
    earlier, later = _window_pairs(
        pd.factorize(orders["customer_id"])[0],
        pd.DatetimeIndex(orders["ordered_at"]).as_unit("ns").asi8,
        pd.Timedelta(days=config.followup_days).value,
    )
    window = sparse.csr_matrix(
        (np.ones(len(earlier), dtype=np.float32), (earlier, later)), shape=(len(orders), len(orders))
    )
    items = position.reindex(known["product_id"]).to_numpy()
    x = _binary(row_of.reindex(known["order_id"]).to_numpy(), items, len(orders), n_items)
    firsts = known.assign(item=items).sort_values("ordered_at").drop_duplicates(["customer_id", "item"])
    x_new = _binary(row_of.reindex(firsts["order_id"]).to_numpy(), firsts["item"].to_numpy(), len(orders), n_items)
    before_each = (window.T @ x).tocsr()  # per later order: items bought in the window before it
    before_each.data[:] = 1.0
    counts = _drop_diagonal((before_each.T @ x_new).tocsr(), 0)
    counts.data[counts.data < config.min_support] = 0
    counts.eliminate_zeros()
    buyers = products["customers"].to_numpy(dtype=np.float64)
    return _scale_rows(counts, 1.0 / np.maximum(buyers, 1))


def _window_pairs(customer: np.ndarray, times: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of rows of one customer with 0 < times[j] - times[i] <= window: the rows
    sorted by (customer, time), then for each row the later rows inside its window (two pointers),
    so the work is the number of pairs, not the square of a customer's order count."""
    order = np.lexsort((times, customer))
    return _window_pairs_sorted(order, customer[order], times[order], window)


@numba.njit(cache=True, nogil=True)
def _window_pairs_sorted(
    order: np.ndarray, customer: np.ndarray, times: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    n = len(order)
    first = np.empty(n, dtype=np.int64)  # per row: the first later row of the same customer
    last = np.empty(n, dtype=np.int64)  # and the end of its window
    lo = 0
    hi = 0
    for i in range(n):
        if lo < i + 1:
            lo = i + 1
        while lo < n and customer[lo] == customer[i] and times[lo] <= times[i]:
            lo += 1
        if hi < lo:
            hi = lo
        while hi < n and customer[hi] == customer[i] and times[hi] - times[i] <= window:
            hi += 1
        if lo >= n or customer[lo] != customer[i]:
            first[i] = lo
            last[i] = lo
        else:
            first[i] = lo
            last[i] = hi
    total = 0
    for i in range(n):
        total += last[i] - first[i]
    earlier = np.empty(total, dtype=np.int64)
    later = np.empty(total, dtype=np.int64)
    at = 0
    for i in range(n):
        for j in range(first[i], last[i]):
            earlier[at] = order[i]
            later[at] = order[j]
            at += 1
    return earlier, later


@dataclass(frozen=True)
class KindsTogether:
    """The kinds bought together beyond their popularity: kind codes of the items (-1: none),
    the kinds, the item x kind matrix, each kind's orders, and the (kind, other kind) pairs bought
    together beyond doubt, with their shared orders."""

    codes: np.ndarray
    categories: pd.Index
    item_category: sparse.csr_matrix
    kind: np.ndarray
    other: np.ndarray
    count: np.ndarray
    per_category: np.ndarray

    def pairs(self) -> pd.DataFrame:
        """The pairs by name, both ways (what ``CandidateIndex.kind_pairs`` stores)."""
        return pd.DataFrame(
            {"kind": self.categories[self.kind].astype(str), "other": self.categories[self.other].astype(str)}
        )


def _kinds_together(x_orders: sparse.csr_matrix, products: pd.DataFrame, config: IndexConfig) -> KindsTogether:
    """Pairs of kinds bought together beyond their popularity and beyond doubt: another kind, the
    minimum support, a lift of ``min_complement_lift`` (a bestselling kind is bought with every
    kind, at a lift near 1), and so many shared orders at that lift by chance at most
    ``max_complement_chance`` of the time (Poisson tail), as an item pairing's claim."""
    codes, categories = pd.factorize(products["category"])
    has = codes >= 0
    item_category = sparse.csr_matrix(
        (np.ones(has.sum(), dtype=np.float32), (np.flatnonzero(has), codes[has])),
        shape=(len(products), len(categories)),
    )
    none = np.zeros(0, dtype=np.int64)
    if not has.any():
        return KindsTogether(codes, categories, item_category, none, none, np.zeros(0), np.zeros(0))
    order_category = (x_orders @ item_category).tocsr()
    order_category.data[:] = 1.0
    together = (order_category.T @ order_category).tocoo()  # sparse: categories x categories can be large
    per_category = np.asarray(order_category.sum(axis=0)).ravel()
    a, b, count = together.row, together.col, together.data
    expected = per_category[a] * per_category[b] / max(x_orders.shape[0], 1)
    lift = count / np.maximum(expected, 1.0 / max(x_orders.shape[0], 1))
    chance = special.pdtrc(np.maximum(count - 1, 0), expected * config.min_complement_lift)
    keep = (
        (a != b)
        & (count >= config.min_support)
        & (lift >= config.min_complement_lift)
        & (chance <= config.max_complement_chance)
    )
    return KindsTogether(codes, categories, item_category, a[keep], b[keep], count[keep], per_category)


def _category_complements(kinds: KindsTogether, products: pd.DataFrame, config: IndexConfig) -> sparse.csr_matrix:
    """Item a -> popular items of categories often bought with a's category."""
    n_items = len(products)
    codes, categories = kinds.codes, kinds.categories
    has = codes >= 0
    if not len(kinds.kind):
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    kind, other, count = kinds.kind, kinds.other, kinds.count
    # P(category b | category a) of the kept pairs, the complement_categories best b per a
    shape = (len(categories), len(categories))
    conditional = sparse.csr_matrix((count / np.maximum(kinds.per_category[kind], 1), (kind, other)), shape=shape)
    complements = _top_k_rows(conditional, config.complement_categories)

    popularity = products["recent_customers"].to_numpy(dtype=np.float64) + 0.1 * products["customers"].to_numpy()
    popularity = np.where(has & products["offerable"].to_numpy(), popularity, 0.0)
    frame = pd.DataFrame({"item": np.arange(n_items), "category": codes, "popularity": popularity})
    frame = frame[(frame["category"] >= 0) & (frame["popularity"] > 0)]
    frame = frame.sort_values(["category", "popularity"], ascending=[True, False])
    frame = frame.groupby("category").head(config.items_per_category)
    totals = frame.groupby("category")["popularity"].transform("sum")
    category_items = sparse.csr_matrix(
        (
            (frame["popularity"] / totals).to_numpy(dtype=np.float32),
            (frame["category"].to_numpy(), frame["item"].to_numpy()),
        ),
        shape=(len(categories), n_items),
    )
    return _drop_diagonal((kinds.item_category @ complements @ category_items).tocsr(), 0)


def _upsell(products: pd.DataFrame, config: IndexConfig) -> sparse.csr_matrix:
    """Item a -> the ``neighbours`` best same-category items priced within the up-sell band,
    popular and rarely returned (score = recent popularity; ties by item position).

    Per category the targets are sorted by price (the band of a seed is a range of them, found by
    binary search) and by score (a seed takes the first targets of that order inside its band), so
    no (seed, target) pair outside the result is materialised."""
    n_items = len(products)
    codes = pd.factorize(products["category"])[0]
    price = products["median_price"].to_numpy(dtype=np.float64)
    customers = products["customers"].to_numpy(dtype=np.float64)
    score = ((1.0 + products["recent_customers"].to_numpy(dtype=np.float64)) + 0.1 * customers).astype(np.float32)
    target = (
        (codes >= 0)
        & products["offerable"].to_numpy(dtype=bool)
        & (customers >= config.upsell_min_customers)
        & np.isfinite(price)
    )
    items = np.flatnonzero(target)
    n_codes = int(codes.max()) + 1 if len(codes) else 0
    by_price = items[np.lexsort((items, price[items], codes[items]))]
    by_score = items[np.lexsort((items, -score[items], codes[items]))]
    bounds = np.searchsorted(codes[by_price], np.arange(n_codes + 1))
    indptr, indices, data = _upsell_kernel(
        codes,
        price,
        score,
        by_price,
        by_score,
        bounds,
        config.upsell_min_ratio,
        config.upsell_max_ratio,
        config.neighbours,
    )
    return sparse.csr_matrix((data, indices, indptr), shape=(n_items, n_items))


@numba.njit(cache=True, nogil=True)
def _upsell_kernel(
    codes: np.ndarray,
    price: np.ndarray,
    score: np.ndarray,
    by_price: np.ndarray,
    by_score: np.ndarray,
    bounds: np.ndarray,
    min_ratio: float,
    max_ratio: float,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(codes)
    counts = np.zeros(n, dtype=np.int64)
    low = np.zeros(n, dtype=np.int64)
    high = np.zeros(n, dtype=np.int64)
    for a in range(n):
        c = codes[a]
        if c < 0 or not np.isfinite(price[a]) or k <= 0:
            continue
        start, stop = bounds[c], bounds[c + 1]
        prices = price[by_price[start:stop]]
        lo = start + np.searchsorted(prices, price[a] * min_ratio * (1 - 1e-9), side="left")
        hi = start + np.searchsorted(prices, price[a] * max_ratio * (1 + 1e-9), side="right")
        while lo < hi and not price[by_price[lo]] / price[a] >= min_ratio:
            lo += 1
        while hi > lo and not price[by_price[hi - 1]] / price[a] <= max_ratio:
            hi -= 1
        low[a], high[a] = lo, hi
        counts[a] = min(hi - lo, k)
    indptr = np.zeros(n + 1, dtype=np.int64)
    for a in range(n):
        indptr[a + 1] = indptr[a] + counts[a]
    indices = np.empty(indptr[n], dtype=np.int32)
    data = np.empty(indptr[n], dtype=np.float32)
    for a in range(n):
        take = counts[a]
        if take == 0:
            continue
        out = indptr[a]
        if high[a] - low[a] <= k:  # the whole band
            chosen = np.sort(by_price[low[a] : high[a]])
        else:  # the best-scored targets inside the band
            c = codes[a]
            chosen = np.empty(take, dtype=np.int64)
            got = 0
            for p in range(bounds[c], bounds[c + 1]):
                b = by_score[p]
                ratio = price[b] / price[a]
                if ratio >= min_ratio and ratio <= max_ratio:
                    chosen[got] = b
                    got += 1
                    if got == take:
                        break
            chosen = np.sort(chosen)
        for j in range(take):
            indices[out + j] = chosen[j]
            data[out + j] = score[chosen[j]]
    return indptr, indices, data


def _top_k_rows(matrix: sparse.spmatrix, k: int, dtype: type = np.float32) -> sparse.csr_matrix:
    """Keep the k largest positive entries of each row (values compared as ``dtype``, ties broken
    by column, the lower first), working on the stored entries only: rows never become dense."""
    matrix = sparse.csr_matrix(matrix, dtype=dtype, copy=True)  # a view would share its indices
    matrix.sum_duplicates()  # sorts the columns of each row in place, as the kernel's tie rule needs
    n_rows, n_cols = matrix.shape
    indptr, indices, data = _top_k_kernel(matrix.indptr, matrix.indices, matrix.data, min(k, n_cols))
    return sparse.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


@numba.njit(cache=True, nogil=True)
def _top_k_kernel(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(indptr) - 1
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):
        positive = 0
        for p in range(indptr[r], indptr[r + 1]):
            if data[p] > 0:
                positive += 1
        out_ptr[r + 1] = out_ptr[r] + min(positive, max(k, 0))
    out_indices = np.empty(out_ptr[n], dtype=indices.dtype)
    out_data = np.empty(out_ptr[n], dtype=data.dtype)
    for r in range(n):
        take = out_ptr[r + 1] - out_ptr[r]
        if take == 0:
            continue
        start, stop, out = indptr[r], indptr[r + 1], out_ptr[r]
        positions = np.empty(stop - start, dtype=np.int64)
        m = 0
        for p in range(start, stop):
            if data[p] > 0:
                positions[m] = p
                m += 1
        positions = positions[:m]
        if m > take:
            # the take largest values, equal ones by column (as a stable descending sort takes
            # them): everything above the take-th largest value, then that value's lowest columns
            values = data[positions]
            threshold = np.partition(values, m - take)[m - take]
            ties = take - np.sum(values > threshold)
            kept = np.empty(take, dtype=np.int64)
            got = 0
            for q in range(m):
                if values[q] > threshold:
                    kept[got] = positions[q]
                    got += 1
                elif values[q] == threshold and ties > 0:
                    kept[got] = positions[q]
                    got += 1
                    ties -= 1
            positions = kept
        for j in range(take):
            out_indices[out + j] = indices[positions[j]]
            out_data[out + j] = data[positions[j]]
    return out_ptr, out_indices, out_data


def _to_frame(matrix: sparse.spmatrix) -> pd.DataFrame:
    coo = sparse.coo_matrix(matrix)
    return pd.DataFrame(
        {"seed": coo.row.astype(np.int32), "item": coo.col.astype(np.int32), "score": coo.data.astype(np.float32)}
    )


def _from_frame(frame: pd.DataFrame, n_items: int) -> sparse.csr_matrix:
    return sparse.csr_matrix(
        (frame["score"].to_numpy(dtype=np.float32), (frame["seed"].to_numpy(), frame["item"].to_numpy())),
        shape=(n_items, n_items),
    )
