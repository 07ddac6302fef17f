"""Open the Feast feature store for given settings, and apply the definitions.

The configuration is built from `Settings` (not read from feature_store.yaml) so that XSELL_HOME
and the online-store choice (SQLite by default, Redis by configuration) are honoured everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from xsell.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

FEATURE_REPO = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def online_store_config(settings: Settings) -> dict[str, object]:
    """Feast online-store block for the configured backend."""
    if settings.feast_online_store == "redis":
        return {"type": "redis", "connection_string": settings.redis_url}
    if settings.feast_online_store == "sqlite":  # Feast's SQLite store, one row per entity
        return {
            "type": "features.online_store.EntityRowSqliteOnlineStore",
            "path": str(settings.feast_dir / "online.db"),
        }
    raise ValueError(f"XSELL_FEAST_ONLINE_STORE must be sqlite or redis, not {settings.feast_online_store!r}")


def registry_config(settings: Settings) -> str | dict[str, object]:
    """Feast registry: the SQL registry at `feast_registry_url` (shared by every instance), else a
    file beside the feature store."""
    if settings.feast_registry_url:
        return {"registry_type": "sql", "path": settings.feast_registry_url, "cache_ttl_seconds": 60}
    return str(settings.feast_dir / "registry.db")


def open_feature_store(settings: Settings) -> FeatureStore:
    """A FeatureStore on this settings' registry, offline Parquet files and online store (Feast is
    imported here: slow to import)."""
    from features.feast_import import FeatureStore, RepoConfig  # noqa: PLC0415  (Feast: slow to import)

    (settings.feast_dir / "data").mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project="xsell",
        registry=registry_config(settings),
        provider="local",
        offline_store={"type": "duckdb"},
        online_store=online_store_config(settings),
        entity_key_serialization_version=3,
        repo_path=str(FEATURE_REPO),
    )
    return FeatureStore(config=config, repo_path=str(FEATURE_REPO))


def apply_definitions(settings: Settings) -> list[str]:
    """Register entities, views and feature services (what `feast apply` does); return their names."""
    from features.definitions import feature_definitions  # noqa: PLC0415  (imports Feast: slow)

    definitions = feature_definitions(settings.feast_dir / "data")
    store = open_feature_store(settings)
    store.apply(list(definitions.objects))  # list(): apply's list type is over all of Feast's object types
    for view in (definitions.customer_stats_fv, definitions.product_stats_fv):
        ensure_offline_file(view)
    return [getattr(obj, "name", "") for obj in definitions.objects]


def definitions_applied(settings: Settings) -> bool:
    """True when the registry already holds the feature service the ranker reads."""
    from features.historical import FEATURE_SERVICE  # noqa: PLC0415  (imports Feast: slow)

    try:
        open_feature_store(settings).get_feature_service(FEATURE_SERVICE)
    except Exception:  # noqa: BLE001 - Feast raises its own not-found errors, or fails on a missing registry
        return False
    return True


def ensure_offline_file(view: object) -> None:
    """Create the view's Parquet batch source, empty and with the view's schema, if it is missing
    (a store that only ever streams still needs the file that offline pushes append to)."""
    import pyarrow as pa  # noqa: PLC0415  (only when the file is missing)
    import pyarrow.parquet as pq  # noqa: PLC0415  (only when the file is missing)

    from features.feast_import import Float64, Int64  # noqa: PLC0415  (Feast: slow to import)

    source = view.batch_source  # type: ignore[attr-defined]
    path = Path(source.path)
    if path.exists():
        return
    arrow_types = {Int64: pa.int64(), Float64: pa.float64()}
    fields = [
        pa.field(view.entity_columns[0].name, pa.string()),  # type: ignore[attr-defined]
        pa.field(source.timestamp_field, pa.timestamp("us", tz="UTC")),
    ]
    fields += [pa.field(f.name, arrow_types.get(f.dtype, pa.string())) for f in view.features]  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.schema(fields).empty_table(), path)
