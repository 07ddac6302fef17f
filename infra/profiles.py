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

A variable set explicitly in the environment always wins (a real deployment points them at managed
Kafka, Redis and PostgreSQL); `stack up` then runs only the local servers that are still implied.

`python -m infra.profiles production` prints `export NAME=VALUE` lines for a shell (the Makefile's
`make run PROFILE=production` evaluates them before `xsell run`).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping

from xsell.settings import Settings, get_settings

PROFILES = ("local", "production")
PRODUCTION_PARTITIONS = 12
PRODUCTION_INSTANCES = {"XSELL_OFFER_INSTANCES": "3", "XSELL_DELIVERY_INSTANCES": "2", "XSELL_API_WORKERS": "2"}


def derived_env(settings: Settings) -> dict[str, str]:
    """Every variable the settings' profile implies (before explicit variables are honoured)."""
    if settings.profile not in PROFILES:
        raise ValueError(f"XSELL_PROFILE must be one of {PROFILES}, not {settings.profile!r}")
    if settings.profile == "local":
        return {}
    return {
        "XSELL_FEAST_ONLINE_STORE": "redis",
        "XSELL_REDIS_URL": f"127.0.0.1:{settings.redis_port}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{settings.mlflow_ui_port}",
        "XSELL_DATABASE_URL": local_database_url(settings, "xsell"),
        "XSELL_PURCHASES_PARTITIONS": str(PRODUCTION_PARTITIONS),
        **PRODUCTION_INSTANCES,
        "XSELL_PREDICT_THREADS": "1",
    }


def local_database_url(settings: Settings, database: str, driver: str = "postgresql+psycopg2") -> str:
    """URL of a database of the local PostgreSQL cluster (loopback, trust authentication)."""
    return f"{driver}://{settings.postgres_user}@127.0.0.1:{settings.postgres_port}/{database}"


def profile_env(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The profile's overrides minus the variables set explicitly in `environ` (default os.environ)."""
    environ = os.environ if environ is None else environ
    explicit = set(environ)
    if "XSELL_MLFLOW_TRACKING_URI" in explicit:
        explicit.add("MLFLOW_TRACKING_URI")
    return {name: value for name, value in derived_env(settings).items() if name not in explicit}


def resolve(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """`settings` with its profile's derived values applied (explicit variables win)."""
    overrides = profile_env(settings, environ)
    if not overrides:
        return settings
    fields = {"XSELL_FEAST_ONLINE_STORE": "feast_online_store", "XSELL_REDIS_URL": "redis_url",
              "MLFLOW_TRACKING_URI": "mlflow_tracking_uri", "XSELL_DATABASE_URL": "database_url",
              "XSELL_PURCHASES_PARTITIONS": "purchases_partitions", "XSELL_OFFER_INSTANCES": "offer_instances",
              "XSELL_DELIVERY_INSTANCES": "delivery_instances", "XSELL_API_WORKERS": "api_workers",
              "XSELL_PREDICT_THREADS": "predict_threads"}
    update: dict[str, object] = {}
    for name, value in overrides.items():
        field = fields[name]
        update[field] = int(value) if isinstance(getattr(settings, field), int) else value
    return settings.model_copy(update=update)


def uses_local(settings: Settings) -> dict[str, bool]:
    """Which local servers the (resolved) settings point at: redis, postgres, mlflow."""
    return {
        "redis": settings.feast_online_store == "redis" and settings.redis_url == f"127.0.0.1:{settings.redis_port}",
        "postgres": bool(settings.database_url) and f"@127.0.0.1:{settings.postgres_port}/" in str(settings.database_url),
        "mlflow": settings.mlflow_tracking_uri == f"http://127.0.0.1:{settings.mlflow_ui_port}",
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m infra.profiles [--make] [PROFILE]`: `export NAME=VALUE` lines of the profile's
    overrides (`--make`: `NAME=VALUE` words on one line, for the Makefile)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--make":
        settings = get_settings(profile=args[1] if len(args) > 1 else "local")
        print(" ".join(f"{name}={value}" for name, value in profile_env(settings).items()))
        return
    profile = args[0] if args and args[0] else os.environ.get("XSELL_PROFILE", "local")
    settings = get_settings(profile=profile)
    lines = [f"export XSELL_PROFILE={shlex.quote(profile)}"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in profile_env(settings).items()]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
