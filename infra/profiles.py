"""Deployment profiles: one place that derives the settings a profile implies.

`local` (default) is the embedded stack: SQLite online store, SQLite MLflow store, SQLite database,
one process per service. `production` (`XSELL_PROFILE=production`) means:

| variable | value (local servers that `xsell stack up --profile production` runs) |
|---|---|
| `XSELL_FEAST_ONLINE_STORE` | `redis` |
| `XSELL_REDIS_URL` | `127.0.0.1:XSELL_REDIS_PORT` |
| `MLFLOW_TRACKING_URI` | `http://127.0.0.1:XSELL_MLFLOW_UI_PORT` (MLflow server on PostgreSQL) |
| `XSELL_DATABASE_URL` | `postgresql+psycopg2://XSELL_POSTGRES_USER@127.0.0.1:XSELL_POSTGRES_PORT/xsell` |
| `XSELL_PURCHASES_PARTITIONS` | `12` |
| `XSELL_OFFER_INSTANCES`, `XSELL_DELIVERY_INSTANCES`, `XSELL_API_WORKERS` | `3`, `2`, `2` |
| `XSELL_PREDICT_THREADS` | `1` (instances share the host's cores: one OpenMP thread each) |

The values are derived where the settings are built (`xsell.settings.production_values`); a
variable set explicitly always wins (a real deployment points them at managed Kafka, Redis and
PostgreSQL), and `stack up` then runs only the local servers that are still implied (`uses_local`).

`python -m infra.profiles production` prints the profile's values as `export NAME=VALUE` lines
for a shell.
"""

from __future__ import annotations

import shlex
import sys

from xsell.settings import Settings, load_settings

# the variable of each field a profile derives
PROFILE_VARIABLES = {
    "feast_online_store": "XSELL_FEAST_ONLINE_STORE",
    "redis_url": "XSELL_REDIS_URL",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "database_url": "XSELL_DATABASE_URL",
    "fold_state_url": "XSELL_FOLD_STATE_URL",
    "feast_registry_url": "XSELL_FEAST_REGISTRY_URL",
    "feast_push_offline": "XSELL_FEAST_PUSH_OFFLINE",
    "feature_instances": "XSELL_FEATURE_INSTANCES",
    "purchases_partitions": "XSELL_PURCHASES_PARTITIONS",
    "offer_instances": "XSELL_OFFER_INSTANCES",
    "delivery_instances": "XSELL_DELIVERY_INSTANCES",
    "api_workers": "XSELL_API_WORKERS",
    "predict_threads": "XSELL_PREDICT_THREADS",
}


def profile_env(settings: Settings) -> dict[str, str]:
    """The profile and the values it derives, as these settings hold them, as variables for a
    child process (which derives the same values from them)."""
    if settings.profile == "local":
        return {"XSELL_PROFILE": "local"}
    return {
        "XSELL_PROFILE": settings.profile,
        **{variable: str(getattr(settings, field)) for field, variable in PROFILE_VARIABLES.items()},
    }


def local_database_url(settings: Settings, database: str, driver: str = "postgresql+psycopg2") -> str:
    """URL of a database of the local PostgreSQL cluster (loopback, trust authentication)."""
    return f"{driver}://{settings.postgres_user}@127.0.0.1:{settings.postgres_port}/{database}"


def uses_local(settings: Settings) -> dict[str, bool]:
    """Which local servers the settings point at: redis, postgres, mlflow."""
    return {
        "redis": settings.feast_online_store == "redis" and settings.redis_url == f"127.0.0.1:{settings.redis_port}",
        "postgres": bool(settings.database_url)
        and f"@127.0.0.1:{settings.postgres_port}/" in str(settings.database_url),
        "mlflow": settings.mlflow_tracking_uri == f"http://127.0.0.1:{settings.mlflow_ui_port}",
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m infra.profiles [PROFILE]`: `export NAME=VALUE` lines of the profile's values."""
    args = sys.argv[1:] if argv is None else argv
    overrides = {"profile": args[0]} if args and args[0] else {}
    settings = load_settings(**overrides)
    print("\n".join(f"export {name}={shlex.quote(value)}" for name, value in profile_env(settings).items()))


if __name__ == "__main__":
    main()
