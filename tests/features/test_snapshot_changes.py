"""Snapshots only on change (backfill's `changed_only` fold): fewer rows, the same point-in-time
values at every lookup time, the same fold state."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.synthetic import generate
from features.aggregates import FeatureFold
from features.backfill import snapshot_frame
from features.catalog import build_catalog, category_map
from tests.features.orders import backfilled_home
from xsell.history import _clean, _from_canonical, events_from_history, read_purchase_history

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "online_retail_sample.parquet"


def fold_days(lines: pd.DataFrame, changed_only: bool) -> tuple[FeatureFold, pd.DataFrame, pd.DataFrame]:
    """Backfill's fold (a day per batch) of the lines: the fold and its customer and product rows."""
    fold = FeatureFold(category_map(build_catalog(lines)))
    customers, products = [], []
    for _, day in itertools.groupby(events_from_history(lines), key=lambda e: e.occurred_at.date()):
        out = fold.apply(list(day), snapshot_every_event=False, changed_only=changed_only)
        customers += out.customer_rows
        products += out.product_rows
    return fold, snapshot_frame(customers), snapshot_frame(products)


def as_of(rows: pd.DataFrame, key: str, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Per entity and lookup time, the values of the latest row strictly before it (as Feast reads)."""
    lookups = pd.MultiIndex.from_product([sorted(rows[key].unique()), times], names=[key, "t"]).to_frame(index=False)
    found = pd.merge_asof(
        lookups.sort_values("t"),
        rows.sort_values("event_timestamp"),
        left_on="t",
        right_on="event_timestamp",
        by=key,
        allow_exact_matches=False,
    )
    return found.drop(columns="event_timestamp").sort_values([key, "t"]).reset_index(drop=True)


def generated_lines() -> pd.DataFrame:
    """A generated history (bench.synthetic): given categories, items selling on most days."""
    raw = generate(30_000, 150).astype({"quantity": "int64"})
    return _clean(_from_canonical(raw.assign(ordered_at=raw["ordered_at"].astype(str))))[0]


@pytest.mark.parametrize("history", ["sample", "generated"])
def test_changed_only_keeps_every_point_in_time_value(history: str) -> None:
    lines = read_purchase_history(SAMPLE).lines if history == "sample" else generated_lines()
    lines = lines[lines["ordered_at"] < lines["ordered_at"].min() + pd.Timedelta(days=120)]
    plain_fold, plain_customers, plain_products = fold_days(lines, changed_only=False)
    fold, customers, products = fold_days(lines, changed_only=True)

    assert len(products) < len(plain_products) if history == "sample" else len(products) <= len(plain_products)
    assert len(customers) <= len(plain_customers)
    event_times = pd.DatetimeIndex(lines["ordered_at"].drop_duplicates().sample(80, random_state=0))
    times = pd.date_range(lines["ordered_at"].min(), lines["ordered_at"].max() + pd.Timedelta(days=1), freq="31h")
    times = times.append(event_times).append(event_times + pd.Timedelta(microseconds=1)).unique().sort_values()
    for key, kept, every in (("customer_id", customers, plain_customers), ("product_id", products, plain_products)):
        pd.testing.assert_frame_equal(as_of(kept, key, times), as_of(every, key, times))
        values = kept.drop(columns="event_timestamp").sort_values(key, kind="stable")
        repeated = (
            values.drop(columns=key).eq(values.groupby(key).shift().drop(columns=key, errors="ignore")).all(axis=1)
        )
        assert not repeated.any(), f"{key}: a row repeats the values of the one before it"

    assert {c: s.to_json() for c, s in fold.customers.items()} == {
        c: s.to_json() for c, s in plain_fold.customers.items()
    }
    assert {p: s.to_json() for p, s in fold.products.items()} == {
        p: s.to_json() for p, s in plain_fold.products.items()
    }
    assert fold.percentiles() == plain_fold.percentiles()


def test_backfill_writes_only_changed_snapshots(tmp_path: Path) -> None:
    settings, _ = backfilled_home(tmp_path)
    products = pd.read_parquet(settings.feast_dir / "data" / "product_stats.parquet")
    values = products.sort_values("event_timestamp", kind="stable").drop(columns="event_timestamp")
    assert not values.drop(columns="product_id").eq(values.groupby("product_id").shift()).all(axis=1).any()
    assert np.all(products.groupby("product_id")["event_timestamp"].is_monotonic_increasing)
