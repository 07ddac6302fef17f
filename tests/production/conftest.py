"""The production profile against real servers: Kafka (purchases at 12 partitions), redis-server,
PostgreSQL, the MLflow tracking server on PostgreSQL, and the services as background processes
(3 offer instances and 2 delivery instances in their consumer groups, the API with 2 uvicorn
workers). Not part of `make test`: they run with `make test-production`, which sets
XSELL_PRODUCTION_TESTS=1 (without it nothing here is collected). Needs `make production-deps`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.kafka.broker import free_port
from infra.processes import ServiceProcesses, pipeline_services
from infra.stack import stack_down, stack_up
from services.schema import create_schema
from xsell.settings import REPO_ROOT, Settings, load_settings

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Collect tests/production only when asked (`make test-production`)."""
    if os.environ.get("XSELL_PRODUCTION_TESTS") != "1" and collection_path.name != "conftest.py":
        return True
    return None


@pytest.fixture(scope="session")
def production() -> Iterator[Settings]:
    """The production profile's stack on free ports in a fresh home (readable by the postgres user),
    with the ranker trained on the sample and registered in the MLflow server; stopped at the end."""
    home = Path(tempfile.mkdtemp(prefix="xsell-production-"))
    home.chmod(0o755)  # the postgres user reaches it: the cluster stays in HOME/postgres (0700: test_private_clone)
    settings = load_settings(
        profile="production",
        home=home,
        log_level="WARNING",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_jars_dir=load_settings().jars_dir,  # the cache `make run` fills
        redis_port=free_port(),
        postgres_port=free_port(),
        mlflow_ui_port=free_port(),
        smtp_port=free_port(),
        api_port=free_port(),
        metrics_port_base=free_port(),
    )
    try:
        stack_up(settings, create_schema)
        from training import commands  # noqa: PLC0415  (heavy)

        summary = commands.train(settings, SAMPLE)
        assert summary["model_version"] == 1 and summary["champion"] is True
        yield settings
    finally:
        stack_down(settings)
        if os.environ.get("XSELL_KEEP_HOME") != "1":
            shutil.rmtree(home, ignore_errors=True)


def service_env(settings: Settings) -> dict[str, str]:
    """Every setting a background service needs, as variables (the services read nothing else)."""
    return {
        "XSELL_PROFILE": "production",
        "XSELL_HOME": str(settings.home),
        "XSELL_LOG_LEVEL": "INFO",
        "XSELL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "XSELL_KAFKA_CONTROLLER_PORT": str(settings.controller_port),
        "XSELL_FEAST_ONLINE_STORE": settings.feast_online_store,
        "XSELL_REDIS_URL": settings.redis_url,
        "MLFLOW_TRACKING_URI": str(settings.mlflow_tracking_uri),
        "XSELL_DATABASE_URL": str(settings.database_url),
        "XSELL_PURCHASES_PARTITIONS": str(settings.purchases_partitions),
        "XSELL_OFFER_INSTANCES": str(settings.offer_instances),
        "XSELL_DELIVERY_INSTANCES": str(settings.delivery_instances),
        "XSELL_API_WORKERS": str(settings.api_workers),
        "XSELL_API_PORT": str(settings.api_port),
        "XSELL_SMTP_PORT": str(settings.smtp_port),
        "XSELL_MLFLOW_UI_PORT": str(settings.mlflow_ui_port),
        "XSELL_REDIS_PORT": str(settings.redis_port),
        "XSELL_POSTGRES_PORT": str(settings.postgres_port),
        "XSELL_PUBLIC_BASE_URL": "https://shop.example",
        "XSELL_POLL_MAX_RECORDS": "20",
    }


@pytest.fixture(scope="session")
def services(production: Settings) -> Iterator[ServiceProcesses]:
    """Every pipeline service of the profile as a background process, the API answering."""
    processes = ServiceProcesses(production)
    env = service_env(production)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("XSELL_", "MLFLOW_"))}
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(clean)  # the children inherit only the test's settings
    try:
        for spec in pipeline_services(production):
            processes.start(spec, env)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    url = f"http://{production.api_host}:{production.api_port}/healthz"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        pytest.fail(f"API not up; see {production.home / 'logs' / 'api.log'}")
    yield processes
    processes.stop_all()
