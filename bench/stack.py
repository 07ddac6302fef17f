"""The benchmarks' own stack: every service of `make run` on free ports in a temporary XSELL_HOME.

`running_stack` starts the profile's infrastructure (`infra.stack.stack_up`: broker and SMTP
capture locally; also Redis, PostgreSQL and the MLflow server in production), trains the ranker on
the data set with the training commands (the first version is the champion), starts every
service as `make run` does (`cli.demo.start_services`) and, on exit, stops them all, takes the
stack down and removes the home. Used by `bench.pipeline` and `bench.api`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from cli.demo import start_services
from infra.kafka.broker import free_port
from infra.processes import ServiceProcesses
from infra.stack import stack_down, stack_up
from services.schema import create_schema
from xsell.settings import Settings, load_settings


def bench_settings(home: Path, profile: str, offer_instances: int | None = None) -> Settings:
    """Settings of the bench's own stack: its home, free ports, the `make run` jars cache."""
    ports = {
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "kafka_controller_port": free_port(),
        "api_port": free_port(),
        "smtp_port": free_port(),
        "mlflow_ui_port": free_port(),
        "metrics_port_base": free_port(),
        "redis_port": free_port(),
        "postgres_port": free_port(),
    }
    instances = {"offer_instances": offer_instances} if offer_instances else {}
    return load_settings(
        home=home, profile=profile, kafka_jars_dir=load_settings().jars_dir, log_level="WARNING", **ports, **instances
    )


@contextmanager
def running_stack(prefix: str, data: Path, profile: str, offer_instances: int | None = None) -> Iterator[Settings]:
    """Every service up in a new home named ``prefix``..., the ranker trained on ``data``; yields the
    stack's settings and tears everything down on exit."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)  # the production profile's PostgreSQL runs as the postgres user under root
    settings = bench_settings(home, profile, offer_instances)
    try:
        stack_up(settings, create_schema)
        from training import commands  # noqa: PLC0415  (LightGBM, MLflow: slow to import)

        with redirect_stdout(sys.stderr):
            commands.train(settings, data)
        start_services(settings, settings.as_environment())
        yield settings
    finally:
        ServiceProcesses(settings).stop_all()
        stack_down(settings)
        shutil.rmtree(home, ignore_errors=True)
