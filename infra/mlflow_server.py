"""The MLflow tracking server of the production profile: backend store on the local PostgreSQL
(`mlflow` database), artifacts proxied by the server into XSELL_HOME/mlflow/artifacts, on
127.0.0.1:XSELL_MLFLOW_UI_PORT. Pid file `HOME/mlflow/server.pid`, log `HOME/mlflow/server.log`.
In a real deployment MLFLOW_TRACKING_URI points at a shared server; then nothing here runs.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra.local_server import LocalServer
from infra.profiles import local_database_url
from xsell.settings import REPO_ROOT, Settings

HOST = "127.0.0.1"


# MLflow's server runs a job runner (a pool of Huey consumers that import MLflow for a minute after
# start-up) for its GenAI jobs; xsell uses none, and the runner's start-up takes both cores here.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServerError(RuntimeError):
    """The server did not come up; the message has its log tail."""


@dataclass(frozen=True)
class MlflowServerStatus:
    """What `stack status` reports."""

    running: bool
    pid: int | None
    address: str
    backend: str
    log_file: Path


class MlflowServer:
    """`mlflow server` in the background, managed through its pid file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "mlflow"
        self.pid_file = self.dir / "server.pid"
        self.log_file = self.dir / "server.log"
        self.port = settings.mlflow_ui_port
        self.backend = local_database_url(settings, "mlflow")
        self.server = LocalServer("mlflow server", self.pid_file, self.log_file, MlflowServerError)

    def command(self) -> list[str]:
        """The server's command line."""
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            str((self.dir / "artifacts").resolve()),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "2",
        ]

    def running_pid(self) -> int | None:
        """Pid of our server if alive (checked against its command line)."""
        return self.server.running_pid()

    def healthy(self) -> bool:
        """True when /health answers 200."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self, timeout_s: float = 120.0) -> MlflowServerStatus:
        """Start (idempotent) and wait for /health."""
        process = None
        if self.running_pid() is None:
            self.server.ensure_port_free(HOST, self.port, "XSELL_MLFLOW_UI_PORT")
            (self.dir / "artifacts").mkdir(parents=True, exist_ok=True)
            process = self.server.launch(self.command(), cwd=REPO_ROOT, env={**os.environ, **SERVER_ENV})
        self.server.wait_ready(self.healthy, timeout_s, waiting_for="answer /health", interval_s=0.5, process=process)
        return self.status()

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM the server (its workers follow), SIGKILL after the timeout; True if it was running."""
        return self.server.stop(timeout_s)

    def status(self) -> MlflowServerStatus:
        """Whether it runs, where."""
        pid = self.running_pid()
        return MlflowServerStatus(pid is not None, pid, f"http://{HOST}:{self.port}", self.backend, self.log_file)

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the log, for errors."""
        return self.server.log_tail(lines)
