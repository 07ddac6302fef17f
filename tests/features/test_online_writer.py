"""The online store of one row per entity and its batched write, against Feast: on a real Feast
repo, a frame written by `OnlineFeatureWriter` leaves the same table rows and reads back exactly as
the same frame pushed with ``store.push(..., to=PushMode.ONLINE)`` (through
`features.online_store.EntityRowSqliteOnlineStore`), and both read back exactly as the same pushes
into Feast's own SQLite store (a row per entity and feature); other online stores get Feast's push."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from features.definitions import feature_definitions
from features.feast_import import FeatureStore, PushMode, RepoConfig
from features.online import OnlineFeatureWriter, _entity_rows
from features.pipeline import CUSTOMER_PUSH_SOURCE, PRODUCT_PUSH_SOURCE
from features.store import FEATURE_REPO, apply_definitions, open_feature_store, registry_config
from xsell.settings import Settings, load_settings

CUSTOMER_FEATURES = [
    "order_count",
    "lifetime_spend",
    "avg_order_value",
    "last_order_ts",
    "first_order_ts",
    "distinct_products",
    "avg_unit_price",
    "return_rate",
    "returned_units_rate",
    "top_categories",
    "category_affinity",
]
PRODUCT_FEATURES = [
    "category",
    "current_price",
    "median_price",
    "price_percentile",
    "popularity_7d",
    "popularity_30d",
    "popularity_90d",
    "total_orders",
    "distinct_buyers",
    "repeat_purchase_rate",
    "return_rate",
    "last_sold_ts",
]


def _customers() -> pd.DataFrame:
    """Customer snapshots with what a push may carry: missing values, an entity twice (the later
    row wins), sub-second times, negative zero, long and non-ASCII text."""
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C1", "Ç4"],
            "event_timestamp": pd.to_datetime(
                [
                    "2011-12-09T12:50:00.123456Z",
                    "2011-12-09T13:00:00Z",
                    "2011-12-08T00:00:00.999999Z",
                    "2011-12-09T14:00:00.5Z",
                    "2011-12-01T09:00:00Z",
                ],
                utc=True,
                format="ISO8601",
            ),
            "order_count": [3, 1, 0, 4, 2],
            "lifetime_spend": [10.5, 0.1 + 0.2, -0.0, 12.25, 1e300],
            "avg_order_value": [3.5, float("nan"), 0.0, 3.0625, 5e-324],
            "last_order_ts": [1.3e9, 1.3e9 + 0.5, None, 1.32e9, 1.0],
            "first_order_ts": [1.2e9, 1.3e9, 1.1e9, 1.2e9, 1.0],
            "distinct_products": [5, 1, 0, 6, 2],
            "avg_unit_price": [2.1, 0.3, 0.0, 2.0, 1.0],
            "return_rate": [0.0, 0.5, -0.0, 0.25, 0.0],  # a negative zero after a zero
            "returned_units_rate": [0.0, 0.1, 0.0, 0.0, 0.0],
            "top_categories": ["MUG|BAG", None, "", "MUG", "THÉ|杯"],
            "category_affinity": ['{"MUG": 0.7, "BAG": 0.3}', "{}", "{}", '{"MUG": 1.0}', "x" * 5000],
        }
    )


def _products(count: int = 300) -> pd.DataFrame:
    rows = []
    for n in range(count):
        rows.append(
            {
                "product_id": f"P{n:05d}",
                "event_timestamp": pd.Timestamp("2011-12-09T12:00:00Z") + pd.Timedelta(seconds=n * 37.25),
                "category": None if n % 17 == 0 else f"CAT{n % 7}",
                "current_price": round(0.01 * n, 2),
                "median_price": float("nan") if n % 13 == 0 else 1.25 + n / 3,
                "price_percentile": n / count,
                "popularity_7d": n % 5,
                "popularity_30d": n % 11,
                "popularity_90d": n % 23,
                "total_orders": n,
                "distinct_buyers": n // 2,
                "repeat_purchase_rate": 0.0 if n % 2 else 1 / 3,
                "return_rate": 0.0,
                "last_sold_ts": 1.32e9 + n,
            }
        )
    return pd.DataFrame(rows)


def _home(path: Path) -> Settings:
    settings = load_settings(home=path)
    apply_definitions(settings)
    return settings


def _feast_sqlite_store(settings: Settings) -> FeatureStore:
    """A home's feature store on Feast's own SQLite online store, the definitions applied."""
    config = RepoConfig(
        project="xsell",
        registry=registry_config(settings),
        provider="local",
        offline_store={"type": "duckdb"},
        online_store={"type": "sqlite", "path": str(settings.feast_dir / "online.db")},
        entity_key_serialization_version=3,
        repo_path=str(FEATURE_REPO),
    )
    store = FeatureStore(config=config, repo_path=str(FEATURE_REPO))
    store.apply(list(feature_definitions(settings.feast_dir / "data").objects))
    return store


def _table_rows(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    connection = sqlite3.connect(settings.feast_dir / "online.db")
    try:
        return {
            table: connection.execute(f'SELECT * FROM "{table}" ORDER BY entity_key').fetchall()  # noqa: S608  (fixed names)
            for table in ("xsell_customer_stats_fv", "xsell_product_stats_fv")
        }
    finally:
        connection.close()


def _read(settings: Settings, store: FeatureStore | None = None) -> dict[str, dict[str, list[object]]]:
    store = store or open_feature_store(settings)
    customers = store.get_online_features(
        features=[f"customer_stats_fv:{n}" for n in CUSTOMER_FEATURES],
        entity_rows=[{"customer_id": c} for c in ["C1", "C2", "C3", "Ç4", "nobody"]],
    ).to_dict(include_event_timestamps=True)
    products = store.get_online_features(
        features=[f"product_stats_fv:{n}" for n in PRODUCT_FEATURES],
        entity_rows=[{"product_id": f"P{n:05d}"} for n in range(0, 320, 3)],
    ).to_dict(include_event_timestamps=True)
    return {"customers": customers, "products": products}


def _same(left: object, right: object) -> bool:
    """Equal, NaN equal to NaN and negative zero told from zero."""
    if isinstance(left, float) and isinstance(right, float):
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return left == right and type(left) is type(right)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Settings, FeatureStore]:
    """Three repos, the same two pushes each (the second overwrites part of the first): one through
    Feast's push, one through the batched writer (both on the store of a row per entity), and one
    through Feast's push into Feast's own SQLite store."""
    feast_home = _home(tmp_path_factory.mktemp("online-feast"))
    fast_home = _home(tmp_path_factory.mktemp("online-fast"))
    feast_store, fast_store = open_feature_store(feast_home), open_feature_store(fast_home)
    reference = _feast_sqlite_store(load_settings(home=tmp_path_factory.mktemp("online-reference")))
    writer = OnlineFeatureWriter(fast_store)
    assert writer.batched
    second = _products(320).iloc[150:].assign(popularity_7d=9, category="LATER")
    for frames in [
        {CUSTOMER_PUSH_SOURCE: _customers(), PRODUCT_PUSH_SOURCE: _products()},
        {PRODUCT_PUSH_SOURCE: second},
    ]:
        for source, frame in frames.items():
            feast_store.push(source, frame, to=PushMode.ONLINE)
            reference.push(source, frame, to=PushMode.ONLINE)
        writer.push(frames)
    writer.close()
    return feast_home, fast_home, reference


def test_the_batched_write_leaves_the_rows_feast_writes(written: tuple[Settings, Settings, FeatureStore]) -> None:
    feast_home, fast_home, _ = written
    feast_rows, fast_rows = _table_rows(feast_home), _table_rows(fast_home)
    assert len(feast_rows["xsell_customer_stats_fv"]) == 4  # a row per entity
    assert len(feast_rows["xsell_product_stats_fv"]) == 320
    assert fast_rows == feast_rows


@pytest.mark.parametrize("home", ["feast", "fast"])
def test_online_reads_equal_those_of_feasts_own_sqlite_store(
    written: tuple[Settings, Settings, FeatureStore], home: str
) -> None:
    feast_home, fast_home, reference = written
    expected, got = _read(feast_home, reference), _read(feast_home if home == "feast" else fast_home)
    assert expected["customers"]["top_categories"][0] == "MUG"  # the later row of C1 won
    assert expected["products"]["category"][-1] == "LATER"
    assert expected["customers"]["order_count"][-1] is None  # an unknown customer
    for part in ("customers", "products"):
        assert got[part].keys() == expected[part].keys()
        for name, values in expected[part].items():
            assert len(got[part][name]) == len(values)
            assert all(_same(a, b) for a, b in zip(got[part][name], values, strict=True)), (part, name)


def test_other_online_stores_keep_feasts_writer(tmp_path: Path) -> None:
    redis = open_feature_store(load_settings(home=tmp_path, feast_online_store="redis"))
    assert not _entity_rows(redis)
    assert not OnlineFeatureWriter(redis).batched
