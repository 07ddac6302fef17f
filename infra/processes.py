"""Background service processes of the local stack: start, stop, status by pid files.

Each service is an `xsell` subcommand (or the MLflow UI) run detached, with its log in
`XSELL_HOME/logs/NAME.log` and its pid in `XSELL_HOME/run/NAME.pid`. `stop` sends SIGTERM (the
services stop cleanly: commit offsets, close clients) and SIGKILL after a timeout.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.local_server import LocalServer
from infra.mlflow_server import SERVER_ENV
from infra.profiles import profile_env
from xsell.settings import Settings


@dataclass(frozen=True)
class ServiceSpec:
    """A named background command."""

    name: str
    command: list[str]
    metrics_port: int = 0
    env: tuple[tuple[str, str], ...] = ()  # variables of this service alone


@dataclass(frozen=True)
class ServiceStatus:
    """Whether a background service runs, with which pid, logging where."""

    name: str
    running: bool
    pid: int | None
    log_file: Path


def replicas(name: str, command: list[str], count: int) -> list[ServiceSpec]:
    """`count` instances of one service (one consumer group): `name` alone, or `name-1`..`name-N`."""
    if count <= 1:
        return [ServiceSpec(name, command)]
    return [ServiceSpec(f"{name}-{number}", command) for number in range(1, count + 1)]


def api_spec(settings: Settings) -> ServiceSpec:
    """`xsell api` (one process), or uvicorn with `api_workers` worker processes."""
    if settings.api_workers <= 1:
        return ServiceSpec("api", [sys.executable, "-m", "cli.main", "api"])
    return ServiceSpec(
        "api",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "services.api.app:create_app_from_env",
            "--host",
            settings.api_host,
            "--port",
            str(settings.api_port),
            "--workers",
            str(settings.api_workers),
            "--proxy-headers",
            "--no-server-header",
        ],
    )


def pipeline_services(settings: Settings) -> list[ServiceSpec]:
    """The services `make run` starts: ingest (validation + DLQ), feature pipeline, offers, delivery,
    in-app inbox, feedback facts and attribution, the purchase archive, API, the candidate-index refresh (every
    `index_refresh_every`), MLflow UI. The profile (infra/profiles.py) sets how many offer and
    delivery instances (one consumer group each) and API workers run."""
    xsell = [sys.executable, "-m", "cli.main"]
    mlflow_ui = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        settings.tracking_uri,
        "--host",
        settings.api_host,
        "--port",
        str(settings.mlflow_ui_port),
        "--workers",
        "1",
    ]
    specs = [
        ServiceSpec("ingest", [*xsell, "ingest"]),
        *replicas("features", [*xsell, "features", "pipeline"], settings.feature_instances),
        *replicas("offers", [*xsell, "offers"], settings.offer_instances),
        *replicas("delivery", [*xsell, "deliver"], settings.delivery_instances),
        ServiceSpec("inbox", [*xsell, "inbox"]),
        ServiceSpec("feedback", [*xsell, "feedback"]),
        ServiceSpec("archive", [*xsell, "archive"]),
        api_spec(settings),
    ]
    specs = [  # Kafka consumers expose /metrics on their own ports (see infra/prometheus/prometheus.yml)
        ServiceSpec(s.name, s.command, settings.metrics_port_base + number)
        for number, s in enumerate(specs)
        if s.name != "api"
    ] + [s for s in specs if s.name == "api"]
    specs.append(
        ServiceSpec("index-refresh", [*xsell, "index", "refresh", "--every", settings.index_refresh_every.strip()])
    )
    if settings.mlflow_tracking_uri is None:  # a configured server is someone else's to run
        specs.append(ServiceSpec("mlflow-ui", mlflow_ui, env=tuple(SERVER_ENV.items())))
    return specs


def instance_home(settings: Settings, name: str) -> Path:
    """The XSELL_HOME of one service instance of the production profile (`HOME/instances/NAME`):
    its scratch space only; its state lives in the shared stores."""
    home = settings.home / "instances" / name
    home.mkdir(parents=True, exist_ok=True)
    return home


class ServiceProcesses:
    """Start, stop and inspect background services of one XSELL_HOME."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.home / "run"
        self.log_dir = settings.home / "logs"

    def _server(self, name: str) -> LocalServer:
        return LocalServer(name, self.run_dir / f"{name}.pid", self.log_dir / f"{name}.log", RuntimeError)

    def start(self, spec: ServiceSpec, env: dict[str, str] | None = None) -> int:
        """Start `spec` unless it already runs; return its pid."""
        if (pid := self.pid(spec.name)) is not None:
            return pid
        environment = {**os.environ, "XSELL_HOME": str(self.settings.home), **profile_env(self.settings), **(env or {})}
        if self.settings.profile == "production":  # shared nothing on disk: each instance its own home
            environment["XSELL_HOME"] = str(instance_home(self.settings, spec.name))
        if spec.metrics_port:
            environment["XSELL_METRICS_PORT"] = str(spec.metrics_port)
        return self._server(spec.name).launch(spec.command, env={**environment, **dict(spec.env)}).pid

    def pid(self, name: str) -> int | None:
        """Pid of the running service `name` (checked against its command line), else None."""
        return self._server(name).running_pid()

    def stop(self, name: str, timeout_s: float = 20.0) -> bool:
        """SIGTERM the service (SIGKILL after `timeout_s`); True if it was running."""
        return self._server(name).stop(timeout_s)

    def names(self) -> list[str]:
        """Services with a pid file."""
        return sorted(p.stem for p in self.run_dir.glob("*.pid")) if self.run_dir.exists() else []

    def status(self) -> list[ServiceStatus]:
        """Status of every service that has a pid file."""
        return [ServiceStatus(n, self.pid(n) is not None, self.pid(n), self.log_dir / f"{n}.log") for n in self.names()]

    def stop_all(self) -> list[str]:
        """Stop every service; return the names of those that were running."""
        return [name for name in self.names() if self.stop(name)]
