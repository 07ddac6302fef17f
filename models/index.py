"""The candidate index: item statistics and item-to-item neighbour lists learned from purchase
history before a point in time (``as_of``), versionable as a model artifact.

What it holds (all from purchase lines strictly before ``as_of``; service codes are not items):
  * ``products``: one row per item (its position is the item's index): product_id, name, category,
    median_price, orders, customers, recent_customers (distinct buyers in the last
    ``recent_days``), return_rate (returned lines / purchased lines), last_sold, offerable.
  * ``neighbours``: per source, a sparse item x item score matrix keeping the top
    ``neighbours`` per seed item:
      - ``basket``: same-order co-occurrence, score = confidence P(b in order | a in order),
        pairs below ``min_support`` orders dropped;
      - ``followup``: customers who bought a and then bought b for the first time within
        ``followup_days``, score = that count / customers of a;
      - ``itemknn``: cosine similarity of item columns of the customer x item matrix;
      - ``category``: complementary categories (category co-occurrence in orders) times the
        item's share of its category's recent buyers, for items with no pair history;
      - ``upsell``: same category, median price ratio in ``[upsell_min_ratio, upsell_max_ratio]``,
        at least ``upsell_min_customers`` buyers, return rate at most ``max_return_rate``;
        score = recent popularity.
  * ``cooccurrence``: the (pruned) same-order co-occurrence counts, for pair features.

``save(directory)`` writes parquet files and a ``manifest.json``; ``CandidateIndex.load`` reads them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from features.catalog import build_catalog

SOURCES = ("basket", "followup", "itemknn", "category", "upsell")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexConfig:
    """Settings of the index build (none is tuned to one data set)."""

    neighbours: int = 100
    min_support: int = 2
    followup_days: int = 14
    recent_days: int = 30
    active_days: int = 90
    upsell_min_ratio: float = 1.15
    upsell_max_ratio: float = 3.0
    upsell_min_customers: int = 3
    max_return_rate: float = 0.25
    complement_categories: int = 10
    items_per_category: int = 30


@dataclass
class CandidateIndex:
    """Item statistics and neighbour lists as of ``as_of``; see the module docstring."""

    config: IndexConfig
    as_of: pd.Timestamp
    products: pd.DataFrame
    neighbours: dict[str, sparse.csr_matrix]
    cooccurrence: sparse.csr_matrix
    orders: int
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
        catalog = build_catalog(before) if len(before) else pd.DataFrame(
            columns=["product_id", "name", "category", "is_service"])
        service = set(catalog.loc[catalog["is_service"].astype(bool), "product_id"])
        real = before[~before["product_id"].isin(service)]
        bought = real[~real["is_return"]]
        products = _product_table(bought, real[real["is_return"]], catalog, as_of, config)
        position = pd.Series(np.arange(len(products)), index=products["product_id"])
        item = position.reindex(bought["product_id"]).to_numpy()
        order_codes, order_ids = pd.factorize(bought["order_id"])
        x_orders = _binary(order_codes, item, len(order_ids), len(products))

        counts = (x_orders.T @ x_orders).tocsr()
        counts.setdiag(0)
        counts.data[counts.data < config.min_support] = 0
        counts.eliminate_zeros()
        per_item_orders = products["orders"].to_numpy(dtype=np.float64)
        confidence = sparse.diags(1.0 / np.maximum(per_item_orders, 1)) @ counts

        neighbours = {
            "basket": _top_k_rows(confidence, config.neighbours),
            "followup": _top_k_rows(_followup(bought, position, products, config), config.neighbours),
            "itemknn": _top_k_rows(_cosine(bought, position, len(products)), config.neighbours),
            "category": _top_k_rows(_category_complements(x_orders, products, config), config.neighbours),
            "upsell": _top_k_rows(_upsell(products, config), config.neighbours),
        }
        return cls(config=config, as_of=as_of, products=products, neighbours=neighbours,
                   cooccurrence=counts.astype(np.float32).tocsr(), orders=len(order_ids))

    def save(self, directory: Path | str) -> Path:
        """Write the index as parquet files plus ``manifest.json``; returns the directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.products.to_parquet(directory / "products.parquet", index=False)
        frames = [_to_frame(matrix).assign(source=name) for name, matrix in self.neighbours.items()]
        pd.concat(frames, ignore_index=True).to_parquet(directory / "neighbours.parquet", index=False)
        _to_frame(self.cooccurrence).to_parquet(directory / "cooccurrence.parquet", index=False)
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
        return cls(
            config=IndexConfig(**manifest["config"]), as_of=pd.Timestamp(manifest["as_of"]),
            products=products, neighbours=neighbours,
            cooccurrence=_from_frame(pd.read_parquet(directory / "cooccurrence.parquet"), n),
            orders=int(manifest["orders"]),
        )


def _product_table(
    bought: pd.DataFrame, returned: pd.DataFrame, catalog: pd.DataFrame, as_of: pd.Timestamp, config: IndexConfig
) -> pd.DataFrame:
    recent = bought[bought["ordered_at"] >= as_of - pd.Timedelta(days=config.recent_days)]
    grouped = bought.groupby("product_id")
    table = pd.DataFrame({
        "median_price": grouped["unit_price"].median(),
        "orders": grouped["order_id"].nunique(),
        "customers": grouped["customer_id"].nunique(),
        "lines": grouped.size(),
        "last_sold": grouped["ordered_at"].max(),
    })
    table["recent_customers"] = recent.groupby("product_id")["customer_id"].nunique().reindex(table.index).fillna(0)
    table["recent_orders"] = recent.groupby("product_id")["order_id"].nunique().reindex(table.index).fillna(0)
    returns = returned.groupby("product_id").size().reindex(table.index).fillna(0)
    table["return_rate"] = (returns / table["lines"]).clip(upper=1.0)
    info = catalog.set_index("product_id")[["name", "category"]]
    table = table.join(info).reset_index().rename(columns={"index": "product_id"})
    active = table["last_sold"] >= as_of - pd.Timedelta(days=config.active_days)
    table["offerable"] = active & (table["return_rate"] <= config.max_return_rate)
    columns = ["product_id", "name", "category", "median_price", "orders", "customers", "recent_customers",
               "recent_orders", "return_rate", "last_sold", "offerable"]
    table = table[columns].sort_values("product_id").reset_index(drop=True)
    table["name"] = table["name"].astype("string")
    table["category"] = table["category"].astype("string")
    for column in ("orders", "customers", "recent_customers", "recent_orders"):
        table[column] = table[column].astype("int64")
    return table


def _binary(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_rows, n_cols))
    matrix.data[:] = 1.0  # duplicates were summed
    return matrix


def _cosine(bought: pd.DataFrame, position: pd.Series, n_items: int) -> sparse.csr_matrix:
    known = bought[bought["customer_id"].notna()]
    customers, _ = pd.factorize(known["customer_id"])
    x = _binary(customers, position.reindex(known["product_id"]).to_numpy(), customers.max() + 1 if len(customers) else 0, n_items)
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    scale = sparse.diags(1.0 / np.maximum(norms, 1e-9))
    similarity = (scale @ (x.T @ x) @ scale).tocsr()
    similarity.setdiag(0)
    similarity.eliminate_zeros()
    return similarity


def _followup(bought: pd.DataFrame, position: pd.Series, products: pd.DataFrame, config: IndexConfig) -> sparse.csr_matrix:
    """Counts of customers who bought a, then bought b for the first time within followup_days."""
    known = bought[bought["customer_id"].notna()]
    n_items = len(products)
    if known.empty:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    orders = known.drop_duplicates("order_id")[["order_id", "customer_id", "ordered_at"]].reset_index(drop=True)
    orders["row"] = np.arange(len(orders))
    row_of = orders.set_index("order_id")["row"]
    pairs = orders.merge(orders, on="customer_id", suffixes=("", "_later"))
    gap = pairs["ordered_at_later"] - pairs["ordered_at"]
    pairs = pairs[(gap > pd.Timedelta(0)) & (gap <= pd.Timedelta(days=config.followup_days))]
    window = sparse.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), (pairs["row"].to_numpy(), pairs["row_later"].to_numpy())),
        shape=(len(orders), len(orders)),
    )
    items = position.reindex(known["product_id"]).to_numpy()
    x = _binary(row_of.reindex(known["order_id"]).to_numpy(), items, len(orders), n_items)
    firsts = known.assign(item=items).sort_values("ordered_at").drop_duplicates(["customer_id", "item"])
    x_new = _binary(row_of.reindex(firsts["order_id"]).to_numpy(), firsts["item"].to_numpy(), len(orders), n_items)
    before_each = (window.T @ x).tocsr()  # per later order: items bought in the window before it
    before_each.data[:] = 1.0
    counts = (before_each.T @ x_new).tocsr()
    counts.setdiag(0)
    counts.data[counts.data < config.min_support] = 0
    counts.eliminate_zeros()
    buyers = products["customers"].to_numpy(dtype=np.float64)
    return (sparse.diags(1.0 / np.maximum(buyers, 1)) @ counts).tocsr()


def _category_complements(x_orders: sparse.csr_matrix, products: pd.DataFrame, config: IndexConfig) -> sparse.csr_matrix:
    """Item a -> popular items of categories often bought with a's category."""
    n_items = len(products)
    codes, categories = pd.factorize(products["category"])
    has = codes >= 0
    if not has.any():
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    item_category = sparse.csr_matrix(
        (np.ones(has.sum(), dtype=np.float32), (np.flatnonzero(has), codes[has])), shape=(n_items, len(categories)))
    order_category = (x_orders @ item_category).tocsr()
    order_category.data[:] = 1.0
    together = (order_category.T @ order_category).toarray()
    per_category = np.diag(together).copy()
    conditional = together / np.maximum(per_category[:, None], 1)  # P(category b | category a)
    keep = np.argsort(-conditional, axis=1)[:, : config.complement_categories]
    mask = np.zeros_like(conditional, dtype=bool)
    np.put_along_axis(mask, keep, True, axis=1)
    complements = sparse.csr_matrix(np.where(mask, conditional, 0.0).astype(np.float32))

    popularity = products["recent_customers"].to_numpy(dtype=np.float64) + 0.1 * products["customers"].to_numpy()
    popularity = np.where(has & products["offerable"].to_numpy(), popularity, 0.0)
    frame = pd.DataFrame({"item": np.arange(n_items), "category": codes, "popularity": popularity})
    frame = frame[(frame["category"] >= 0) & (frame["popularity"] > 0)]
    frame = frame.sort_values(["category", "popularity"], ascending=[True, False])
    frame = frame.groupby("category").head(config.items_per_category)
    totals = frame.groupby("category")["popularity"].transform("sum")
    category_items = sparse.csr_matrix(
        ((frame["popularity"] / totals).to_numpy(dtype=np.float32), (frame["category"].to_numpy(), frame["item"].to_numpy())),
        shape=(len(categories), n_items),
    )
    scores = (item_category @ complements @ category_items).tocsr()
    scores.setdiag(0)
    scores.eliminate_zeros()
    return scores


def _upsell(products: pd.DataFrame, config: IndexConfig) -> sparse.csr_matrix:
    """Item a -> same-category items priced within the up-sell band, popular and rarely returned."""
    n_items = len(products)
    frame = products.assign(item=np.arange(n_items))[["item", "category", "median_price", "customers",
                                                      "recent_customers", "return_rate", "offerable"]]
    frame = frame[frame["category"].notna()]
    targets = frame[frame["offerable"] & (frame["customers"] >= config.upsell_min_customers)]
    pairs = frame[["item", "category", "median_price"]].merge(targets, on="category", suffixes=("", "_up"))
    ratio = pairs["median_price_up"] / pairs["median_price"]
    pairs = pairs[(ratio >= config.upsell_min_ratio) & (ratio <= config.upsell_max_ratio)]
    score = 1.0 + pairs["recent_customers"] + 0.1 * pairs["customers"]
    return sparse.csr_matrix(
        (score.to_numpy(dtype=np.float32), (pairs["item"].to_numpy(), pairs["item_up"].to_numpy())),
        shape=(n_items, n_items),
    )


def _top_k_rows(matrix: sparse.spmatrix, k: int, block: int = 1024) -> sparse.csr_matrix:
    """Keep the k largest positive entries of each row (rows processed in dense blocks)."""
    matrix = sparse.csr_matrix(matrix, dtype=np.float32)
    n_rows, n_cols = matrix.shape
    rows, cols, values = [], [], []
    for start in range(0, n_rows, block):
        dense = matrix[start: start + block].toarray()
        take = min(k, n_cols)
        if take == 0:
            break
        top = np.argpartition(-dense, take - 1, axis=1)[:, :take] if take < n_cols else np.tile(np.arange(n_cols), (len(dense), 1))
        top_values = np.take_along_axis(dense, top, axis=1)
        keep = top_values > 0
        rows.append(np.nonzero(keep)[0] + start)
        cols.append(top[keep])
        values.append(top_values[keep])
    if not rows:
        return sparse.csr_matrix((n_rows, n_cols), dtype=np.float32)
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n_cols))


def _to_frame(matrix: sparse.spmatrix) -> pd.DataFrame:
    coo = sparse.coo_matrix(matrix)
    return pd.DataFrame({"seed": coo.row.astype(np.int32), "item": coo.col.astype(np.int32), "score": coo.data.astype(np.float32)})


def _from_frame(frame: pd.DataFrame, n_items: int) -> sparse.csr_matrix:
    return sparse.csr_matrix(
        (frame["score"].to_numpy(dtype=np.float32), (frame["seed"].to_numpy(), frame["item"].to_numpy())),
        shape=(n_items, n_items),
    )
