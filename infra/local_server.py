"""One background server of the local stack, managed through a pid file and a log file.

The Kafka broker, redis-server, PostgreSQL, the MLflow server, the SMTP capture server and the
pipeline services all run the same way: refuse a port another process holds, start detached
(`start_new_session`, so the process outlives the command that started it) with its output
appended to a log, record the pid (and the command line) in a pid file, wait until it answers, and
stop with SIGTERM, then SIGKILL after a grace period (`infra.process_control.terminate`). A pid
file is trusted only while the process it names is alive and is ours (`owns`), so a stale file or
a reused pid never counts as running.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from infra.process_control import terminate


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def same_command(process: psutil.Process, recorded: str) -> bool:
    """`owns` for a pid file written by `LocalServer.launch`: the process runs the recorded command."""
    return " ".join(process.cmdline()) == recorded


@dataclass(frozen=True)
class ServerStatus:
    """What `stack status` reports for a local server."""

    running: bool
    pid: int | None
    address: str
    data_dir: Path
    log_file: Path


@dataclass(frozen=True)
class LocalServer:
    """The files and checks of one local server; what it runs and how it answers stays with its module.

    `owns(process, recorded)` tells whether the live process named by the pid file is this server;
    `recorded` is what follows the pid in the file (the command line `launch` wrote, or whatever the
    server itself writes there). `error` is the exception the module raises to its callers.
    """

    name: str
    pid_file: Path
    log_file: Path
    error: type[Exception]
    owns: Callable[[psutil.Process, str], bool] = same_command
    tail_lines: int = 30

    # -- state ----------------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        """Pid of this server if the pid file names a live process that `owns` accepts, else None."""
        try:
            pid_text, _, recorded = self.pid_file.read_text().partition("\n")
            process = psutil.Process(int(pid_text.split()[0]))
            alive = process.status() != psutil.STATUS_ZOMBIE
            return process.pid if alive and self.owns(process, recorded) else None
        except (FileNotFoundError, PermissionError, ValueError, IndexError, psutil.Error):
            return None

    def status(self, address: str, data_dir: Path) -> ServerStatus:
        """Whether it runs, with which pid, where."""
        pid = self.running_pid()
        return ServerStatus(pid is not None, pid, address, data_dir, self.log_file)

    def log_tail(self, lines: int | None = None) -> str:
        """Last lines of the log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except (FileNotFoundError, PermissionError):
            return f"(no {self.name} log yet)"
        return "\n".join(text.splitlines()[-(lines or self.tail_lines) :])

    # -- lifecycle ------------------------------------------------------------------------------
    def ensure_port_free(self, host: str, port: int, setting: str) -> None:
        """Raise `error` when another process listens on host:port; `setting` names the variable to change."""
        if port_in_use(host, port):
            raise self.error(f"port {port} on {host} is taken by another process: stop it or set {setting}")

    def launch(
        self, command: list[str], *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `command` detached, output appended to the log; write the pid and command to the pid file."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log_handle:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the command that started it; `stop` ends it
            )
        self.pid_file.write_text(f"{process.pid}\n{' '.join(command)}")
        return process

    def wait_ready(
        self,
        ready: Callable[[], bool],
        timeout_s: float,
        *,
        waiting_for: str,
        interval_s: float = 0.1,
        process: subprocess.Popen[bytes] | None = None,
        stop_on_timeout: bool = False,
    ) -> None:
        """Poll `ready` until it is true. Raise `error` with the log tail if `process` (the one just
        launched, if any) exits first, or when `timeout_s` runs out: "<name> did not <waiting_for>
        within …"; with `stop_on_timeout` the launched process is stopped before raising."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise self.error(f"{self.name} exited with code {process.returncode}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(interval_s)
        if stop_on_timeout and process is not None:
            terminate(process.pid, 10)
            process.wait(10)
            self.pid_file.unlink(missing_ok=True)
        raise self.error(f"{self.name} did not {waiting_for} within {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float) -> bool:
        """SIGTERM the server, SIGKILL after `timeout_s` (children too); remove the pid file; True if it ran."""
        pid = self.running_pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        terminate(pid, timeout_s)
        return True
