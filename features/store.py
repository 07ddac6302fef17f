"""Open the Feast feature store for given settings, and apply the definitions.

The configuration is built from `Settings` (not read from feature_store.yaml) so that XSELL_HOME
and the online-store choice (SQLite by default, Redis by configuration) are honoured everywhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from xsell.settings import Settings

FEATURE_REPO = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def online_store_config(settings: Settings) -> dict[str, object]:
    """Feast online-store block for the configured backend."""
    if settings.feast_online_store == "redis":
        return {"type": "redis", "connection_string": settings.redis_url}
    if settings.feast_online_store == "sqlite":
        return {"type": "sqlite", "path": str(settings.feast_dir / "online.db")}
    raise ValueError(f"XSELL_FEAST_ONLINE_STORE must be sqlite or redis, not {settings.feast_online_store!r}")


def open_feature_store(settings: Settings):  # noqa: ANN201  (feast.FeatureStore; imported lazily: slow)
    """A FeatureStore on this settings' registry, offline Parquet files and online store."""
    os.environ.setdefault("FEAST_USAGE", "False")  # no telemetry attempts from a closed network
    from feast import FeatureStore, RepoConfig  # noqa: PLC0415

    (settings.feast_dir / "data").mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project="xsell",
        registry=str(settings.feast_dir / "registry.db"),
        provider="local",
        offline_store={"type": "file"},
        online_store=online_store_config(settings),
        entity_key_serialization_version=3,
        repo_path=str(FEATURE_REPO),
    )
    return FeatureStore(config=config, repo_path=str(FEATURE_REPO))


def apply_definitions(settings: Settings) -> list[str]:
    """Register entities, views and feature services (what `feast apply` does); return their names."""
    os.environ["XSELL_HOME"] = str(settings.home)  # definitions.py resolves Parquet paths from settings
    from features import definitions  # noqa: PLC0415

    if definitions._DATA_DIR != settings.feast_dir / "data":  # imported earlier under another home
        import importlib  # noqa: PLC0415

        definitions = importlib.reload(definitions)
    store = open_feature_store(settings)
    store.apply(definitions.FEAST_OBJECTS)
    return [getattr(obj, "name", "") for obj in definitions.FEAST_OBJECTS]
