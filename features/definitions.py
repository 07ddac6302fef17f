"""Feast definitions: entities, sources, feature views and the versioned feature services.

Every feature is computed by `features.aggregates.FeatureFold` (one definition for backfill and
streaming); these objects only declare where the values live and what they mean. Views are fed by
push sources whose batch sources are the Parquet files backfill writes under XSELL_HOME, so a push
from the streaming pipeline reaches both the online and the offline store.

The Parquet paths depend on XSELL_HOME, so the objects are built from settings
(`feature_definitions`), never from the environment at import; `features/repo.py` is what the
Feast CLI reads inside this folder (`feast apply`), built from the settings of its environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa

from features.feast_import import (
    DataSource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    PushSource,
    String,
    ValueType,
)

OWNER_TAGS = {"owner": "xsell-ml", "team": "recommendations"}
# Snapshots never expire in point-in-time joins: a customer last seen a year ago still has a history.
NO_EXPIRY = timedelta(days=3650)

CUSTOMER_FIELDS = [
    Field(name="order_count", dtype=Int64, description="Purchase orders so far."),
    Field(name="lifetime_spend", dtype=Float64, description="Sum of quantity x unit price over purchases."),
    Field(name="avg_order_value", dtype=Float64, description="lifetime_spend / order_count."),
    Field(
        name="last_order_ts",
        dtype=Float64,
        description="Unix time of the latest purchase (days since last order derives from it).",
    ),
    Field(name="first_order_ts", dtype=Float64, description="Unix time of the first purchase."),
    Field(name="distinct_products", dtype=Int64, description="Distinct products ever bought."),
    Field(name="avg_unit_price", dtype=Float64, description="Spend per unit bought: price sensitivity."),
    Field(name="return_rate", dtype=Float64, description="Cancellation events / all order events."),
    Field(name="returned_units_rate", dtype=Float64, description="Units returned / units bought."),
    Field(name="top_categories", dtype=String, description="Up to 3 categories by spend, '|'-separated."),
    Field(name="category_affinity", dtype=String, description="JSON: category -> share of spend (top 20)."),
]
PRODUCT_FIELDS = [
    Field(name="category", dtype=String, description="Product category (given, or derived from the name)."),
    Field(name="current_price", dtype=Float64, description="Unit price of the latest sale."),
    Field(name="median_price", dtype=Float64, description="Median unit price over order lines."),
    Field(
        name="price_percentile", dtype=Float64, description="Mid-rank percentile of median_price within the category."
    ),
    Field(name="popularity_7d", dtype=Int64, description="Order lines in the 7 days up to the latest sale."),
    Field(name="popularity_30d", dtype=Int64, description="Order lines in the 30 days up to the latest sale."),
    Field(name="popularity_90d", dtype=Int64, description="Order lines in the 90 days up to the latest sale."),
    Field(name="total_orders", dtype=Int64, description="Order lines ever."),
    Field(name="distinct_buyers", dtype=Int64, description="Distinct known customers who bought it."),
    Field(name="repeat_purchase_rate", dtype=Float64, description="Share of buyers who bought it in 2+ orders."),
    Field(name="return_rate", dtype=Float64, description="Units returned / units sold."),
    Field(name="last_sold_ts", dtype=Float64, description="Unix time of the latest sale."),
]

ARROW_TYPES: dict[object, pa.DataType] = {Int64: pa.int64(), Float64: pa.float64(), String: pa.string()}


def snapshot_schema(join_key: str, fields: list[Field]) -> pa.Schema:
    """The Parquet schema of a view's snapshot file: the join key, ``event_timestamp`` (UTC), then
    the view's fields in order."""
    columns = [pa.field(join_key, pa.string()), pa.field("event_timestamp", pa.timestamp("ns", tz="UTC"))]
    return pa.schema(columns + [pa.field(f.name, ARROW_TYPES[f.dtype]) for f in fields])


CUSTOMER_SCHEMA = snapshot_schema("customer_id", CUSTOMER_FIELDS)
PRODUCT_SCHEMA = snapshot_schema("product_id", PRODUCT_FIELDS)


@dataclass(frozen=True)
class FeatureDefinitions:
    """Every Feast object of xsell, for one offline-store folder."""

    customer: Entity
    product: Entity
    customer_stats_source: FileSource
    product_stats_source: FileSource
    customer_stats_push_source: PushSource
    product_stats_push_source: PushSource
    customer_stats_fv: FeatureView
    product_stats_fv: FeatureView
    offer_ranker_v1: FeatureService

    @property
    def objects(self) -> list[Entity | DataSource | FeatureView | FeatureService]:
        """All of them, in the order `feast apply` registers them."""
        return [getattr(self, name) for name in self.__dataclass_fields__]


def feature_definitions(data_dir: Path) -> FeatureDefinitions:
    """The entities, sources, views and feature services whose Parquet files live in ``data_dir``
    (``Settings.feast_dir / "data"``)."""
    customer = Entity(
        name="customer",
        join_keys=["customer_id"],
        value_type=ValueType.STRING,
        description="A shopper with a known customer id (anonymous orders have none).",
        tags=OWNER_TAGS,
    )
    product = Entity(
        name="product",
        join_keys=["product_id"],
        value_type=ValueType.STRING,
        description="A catalog item (stock code).",
        tags=OWNER_TAGS,
    )
    customer_stats_source = FileSource(
        name="customer_stats_source",
        path=str(data_dir / "customer_stats.parquet"),
        timestamp_field="event_timestamp",
        description="Customer snapshots written by backfill and pushes.",
        tags=OWNER_TAGS,
    )
    product_stats_source = FileSource(
        name="product_stats_source",
        path=str(data_dir / "product_stats.parquet"),
        timestamp_field="event_timestamp",
        description="Product snapshots written by backfill and pushes.",
        tags=OWNER_TAGS,
    )
    customer_stats_push_source = PushSource(
        name="customer_stats_push_source",
        batch_source=customer_stats_source,
        description="Streaming customer updates from the feature pipeline.",
        tags=OWNER_TAGS,
    )
    product_stats_push_source = PushSource(
        name="product_stats_push_source",
        batch_source=product_stats_source,
        description="Streaming product updates from the feature pipeline.",
        tags=OWNER_TAGS,
    )
    customer_stats_fv = FeatureView(
        name="customer_stats_fv",
        entities=[customer],
        ttl=NO_EXPIRY,
        schema=CUSTOMER_FIELDS,
        source=customer_stats_push_source,
        online=True,
        tags=OWNER_TAGS,
        description="Customer purchase behaviour up to (not including) the lookup time.",
    )
    product_stats_fv = FeatureView(
        name="product_stats_fv",
        entities=[product],
        ttl=NO_EXPIRY,
        schema=PRODUCT_FIELDS,
        source=product_stats_push_source,
        online=True,
        tags=OWNER_TAGS,
        description="Product price, popularity and returns up to (not including) the lookup time.",
    )
    offer_ranker_v1 = FeatureService(
        name="offer_ranker_v1",
        features=[customer_stats_fv, product_stats_fv],
        tags=OWNER_TAGS,
        description="Inputs of the offer ranker, version 1: customer and candidate-product statistics.",
    )
    return FeatureDefinitions(
        customer=customer,
        product=product,
        customer_stats_source=customer_stats_source,
        product_stats_source=product_stats_source,
        customer_stats_push_source=customer_stats_push_source,
        product_stats_push_source=product_stats_push_source,
        customer_stats_fv=customer_stats_fv,
        product_stats_fv=product_stats_fv,
        offer_ranker_v1=offer_ranker_v1,
    )
