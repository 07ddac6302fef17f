"""The MLflow tracking server of the production profile: backend store on the local PostgreSQL
(`mlflow` database), artifacts proxied by the server into XSELL_HOME/mlflow/artifacts, on
127.0.0.1:XSELL_MLFLOW_UI_PORT. Pid file `HOME/mlflow/server.pid`, log `HOME/mlflow/server.log`.
In a real deployment MLFLOW_TRACKING_URI points at a shared server; then nothing here runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from infra.kafka.broker import port_in_use
from infra.process_control import terminate
from infra.profiles import local_database_url
from xsell.settings import REPO_ROOT, Settings

HOST = "127.0.0.1"


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

    def command(self) -> list[str]:
        """The server's command line."""
        return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
                "--artifacts-destination", str((self.dir / "artifacts").resolve()),
                "--host", HOST, "--port", str(self.port), "--workers", "2"]

    def running_pid(self) -> int | None:
        """Pid of our server if alive (checked against its command line)."""
        try:
            pid_text, command = self.pid_file.read_text().split("\n", 1)
            process = psutil.Process(int(pid_text))
            alive = process.status() != psutil.STATUS_ZOMBIE
            return process.pid if alive and " ".join(process.cmdline()) == command else None
        except (FileNotFoundError, ValueError, psutil.Error):
            return None

    def healthy(self) -> bool:
        """True when /health answers 200."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/health", timeout=2) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def start(self, timeout_s: float = 120.0) -> MlflowServerStatus:
        """Start (idempotent) and wait for /health."""
        process = None
        if self.running_pid() is None:
            if port_in_use(HOST, self.port):
                raise MlflowServerError(f"port {self.port} on {HOST} is taken: stop it or set XSELL_MLFLOW_UI_PORT")
            (self.dir / "artifacts").mkdir(parents=True, exist_ok=True)
            command = self.command()
            with self.log_file.open("ab") as log_handle:
                process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_handle, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            self.pid_file.write_text(f"{process.pid}\n{' '.join(command)}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.healthy():
                return self.status()
            if process is not None and process.poll() is not None:
                raise MlflowServerError(f"mlflow server exited with {process.returncode}:\n{self.log_tail()}")
            time.sleep(0.5)
        raise MlflowServerError(f"mlflow server not healthy within {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM the server (its workers follow), SIGKILL after the timeout; True if it was running."""
        pid = self.running_pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        terminate(pid, timeout_s)
        return True

    def status(self) -> MlflowServerStatus:
        """Whether it runs, where."""
        pid = self.running_pid()
        return MlflowServerStatus(pid is not None, pid, f"http://{HOST}:{self.port}", self.backend, self.log_file)

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the log, for errors."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no mlflow server log yet)"
