"""The candidate index's sparse kernels against plain dense or all-pairs references: top k per row,
the up-sell band, the follow-up window pairs, blocked item x item products."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from models.index import (
    IndexConfig,
    _cooccurrence,
    _cosine,
    _gram_blocks,
    _top_k_rows,
    _upsell,
    _window_pairs,
)


def reference_top_k(dense: np.ndarray, k: int) -> np.ndarray:
    """The k largest positive entries per row, ties by column (lower first), densely."""
    out = np.zeros_like(dense)
    for r, row in enumerate(dense):
        order = np.lexsort((np.arange(len(row)), -row))
        keep = [c for c in order[:k] if row[c] > 0]
        out[r, keep] = row[keep]
    return out


@pytest.mark.parametrize("k", [0, 1, 3, 7, 50])
def test_top_k_rows_matches_the_dense_reference_with_ties_by_column(k: int) -> None:
    rng = np.random.default_rng(k)
    dense = rng.integers(-2, 4, size=(40, 30)).astype(np.float32)  # many ties, zeros and negatives
    dense[rng.random(dense.shape) < 0.4] = 0
    result = _top_k_rows(sparse.csr_matrix(dense), k)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result.toarray(), reference_top_k(dense, k))
    assert result.has_sorted_indices


def test_top_k_rows_sums_duplicates_and_leaves_its_input_alone() -> None:
    coo = sparse.coo_matrix(
        (np.array([1.0, 2.0, 5.0, 1.0]), (np.array([0, 0, 0, 1]), np.array([3, 1, 3, 0]))), shape=(2, 4)
    )
    csr = coo.tocsr()
    before = (csr.indices.copy(), csr.data.copy())
    np.testing.assert_array_equal(_top_k_rows(coo, 1).toarray(), [[0, 0, 0, 6], [1, 0, 0, 0]])
    np.testing.assert_array_equal(_top_k_rows(csr, 1).toarray(), [[0, 0, 0, 6], [1, 0, 0, 0]])
    np.testing.assert_array_equal(csr.indices, before[0])
    np.testing.assert_array_equal(csr.data, before[1])


def test_top_k_rows_never_densifies_a_row() -> None:
    n = 2_000_000  # a dense block of 1,024 such rows would take 8 GB
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, n, 1_000_000), rng.integers(0, n, 1_000_000)
    matrix = sparse.csr_matrix((rng.random(1_000_000).astype(np.float32) + 0.1, (rows, cols)), shape=(n, n))
    result = _top_k_rows(matrix, 2)
    assert result.nnz == np.minimum(np.diff(matrix.indptr), 2).sum()


def reference_upsell(products: pd.DataFrame, config: IndexConfig) -> np.ndarray:
    """All (seed, target) pairs of a category inside the band, then the top k per seed."""
    frame = products.assign(item=np.arange(len(products)))
    frame = frame[frame["category"].notna()]
    targets = frame[frame["offerable"] & (frame["customers"] >= config.upsell_min_customers)]
    pairs = frame[["item", "category", "median_price"]].merge(targets, on="category", suffixes=("", "_up"))
    ratio = pairs["median_price_up"] / pairs["median_price"]
    pairs = pairs[(ratio >= config.upsell_min_ratio) & (ratio <= config.upsell_max_ratio)]
    score = 1.0 + pairs["recent_customers"] + 0.1 * pairs["customers"]
    dense = np.zeros((len(products), len(products)), dtype=np.float32)
    dense[pairs["item"].to_numpy(), pairs["item_up"].to_numpy()] = score.to_numpy(dtype=np.float32)
    return reference_top_k(dense, config.neighbours)


@pytest.mark.parametrize("neighbours", [1, 4, 100])
def test_upsell_matches_the_all_pairs_reference(neighbours: int) -> None:
    rng = np.random.default_rng(neighbours)
    n = 300
    base = rng.choice([1.0, 2.0, 2.3, 3.0, 4.0, 6.0, 1.15, 7.5], n)  # exact band edges (2 x 1.15 = 2.3; 2 x 3 = 6)
    categories = rng.choice(["A", "B", "C", None], n, p=[0.5, 0.3, 0.15, 0.05])
    products = pd.DataFrame(
        {
            "category": pd.array(categories, dtype="string"),
            "median_price": np.where(rng.random(n) < 0.5, base, base * rng.uniform(0.5, 2.0, n)),
            "customers": rng.integers(0, 8, n),
            "recent_customers": rng.integers(0, 3, n),  # many equal scores
            "offerable": rng.random(n) < 0.8,
        }
    )
    config = IndexConfig(neighbours=neighbours)
    result = _upsell(products, config)
    np.testing.assert_array_equal(_top_k_rows(result, neighbours).toarray(), result.toarray())
    np.testing.assert_array_equal(result.toarray(), reference_upsell(products, config))


def test_upsell_band_including_one_pairs_an_item_with_itself_as_before() -> None:
    products = pd.DataFrame(
        {
            "category": pd.array(["A", "A"], dtype="string"),
            "median_price": [2.0, 2.0],
            "customers": [5, 5],
            "recent_customers": [1, 2],
            "offerable": [True, True],
        }
    )
    config = IndexConfig(upsell_min_ratio=0.5, upsell_max_ratio=2.0)
    np.testing.assert_array_equal(_upsell(products, config).toarray(), reference_upsell(products, config))


def test_window_pairs_match_the_per_customer_self_merge() -> None:
    rng = np.random.default_rng(1)
    n = 2_000
    customer = rng.integers(0, 30, n)
    times = rng.integers(0, 100, n) * 3_600 * 24 * 10**9 // 4  # quarter days: many equal times
    window = 14 * 86_400 * 10**9
    earlier, later = _window_pairs(customer, times, window)
    orders = pd.DataFrame({"row": np.arange(n), "customer": customer, "t": times})
    pairs = orders.merge(orders, on="customer", suffixes=("", "_later"))
    gap = pairs["t_later"] - pairs["t"]
    expected = pairs[(gap > 0) & (gap <= window)]
    assert sorted(zip(earlier.tolist(), later.tolist(), strict=True)) == sorted(
        zip(expected["row"], expected["row_later"], strict=True)
    )


def test_blocked_products_equal_the_whole_product() -> None:
    rng = np.random.default_rng(2)
    x = sparse.csr_matrix((rng.random((300, 80)) < 0.1).astype(np.float32))
    whole = (x.T @ x).toarray()
    blocks = list(_gram_blocks(x, budget=50))
    assert len(blocks) > 5
    np.testing.assert_array_equal(sparse.vstack([b for _, b in blocks]).toarray(), whole)

    expected = whole.copy()
    np.fill_diagonal(expected, 0)
    expected[expected < 2] = 0
    np.testing.assert_array_equal(_cooccurrence(x, 2).toarray(), expected)


def test_cosine_is_the_top_k_of_the_dense_similarity() -> None:
    rng = np.random.default_rng(3)
    rows, cols = np.nonzero(rng.random((120, 50)) < 0.15)
    bought = pd.DataFrame({"customer_id": [f"c{r}" for r in rows], "product_id": [f"p{c}" for c in cols]})
    position = pd.Series(np.arange(50), index=[f"p{c}" for c in range(50)])
    x = np.zeros((120, 50), dtype=np.float32)
    x[rows, cols] = 1
    x = x[np.unique(rows)]
    norms = np.sqrt(x.sum(axis=0))
    similarity = (x.T @ x) / np.maximum(norms, 1e-9)[:, None] / np.maximum(norms, 1e-9)[None, :]
    np.fill_diagonal(similarity, 0)
    result = _cosine(bought, position, 50, 5).toarray()
    assert (np.count_nonzero(result, axis=1) <= 5).all()
    kept = result > 0
    np.testing.assert_allclose(result[kept], similarity[kept], rtol=1e-6)
    # what is kept is a top 5: no dropped entry beats the smallest kept one of its row
    for r in range(50):
        if kept[r].any():
            assert similarity[r][~kept[r]].max(initial=0) <= result[r][kept[r]].min() + 1e-6
