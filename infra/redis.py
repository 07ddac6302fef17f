"""A local redis-server for the production profile: loopback, own port, data in XSELL_HOME/redis.

Started daemonized with a pid file (`HOME/redis/redis.pid`) and log (`HOME/redis/redis.log`);
`stop` asks it to shut down (SIGTERM: it saves its RDB snapshot first). A managed Redis in a real
deployment is configured with `XSELL_REDIS_URL`; then nothing here runs.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from infra.kafka.broker import port_in_use
from infra.process_control import terminate
from xsell.settings import Settings

HOST = "127.0.0.1"


class RedisError(RuntimeError):
    """redis-server could not start; the message says why and what to do."""


@dataclass(frozen=True)
class RedisStatus:
    """What `stack status` reports."""

    running: bool
    pid: int | None
    address: str
    data_dir: Path
    log_file: Path


class RedisServer:
    """One redis-server per XSELL_HOME, managed through its pid file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "redis"
        self.pid_file = self.dir / "redis.pid"
        self.log_file = self.dir / "redis.log"
        self.port = settings.redis_port

    def running_pid(self) -> int | None:
        """Pid of our redis-server if alive (checked against its command line and port)."""
        try:
            process = psutil.Process(int(self.pid_file.read_text().split()[0]))
            alive = process.status() != psutil.STATUS_ZOMBIE
            return process.pid if alive and "redis-server" in process.name() and f":{self.port}" in " ".join(process.cmdline()) else None
        except (FileNotFoundError, ValueError, IndexError, psutil.Error):
            return None

    def start(self, timeout_s: float = 20.0) -> RedisStatus:
        """Start redis-server daemonized (idempotent) and wait until it answers PING."""
        if self.running_pid() is None:
            binary = shutil.which("redis-server")
            if binary is None:
                raise RedisError("redis-server is not installed: run `make production-deps`")
            if port_in_use(HOST, self.port):
                raise RedisError(f"port {self.port} on {HOST} is taken: stop it or set XSELL_REDIS_PORT")
            self.dir.mkdir(parents=True, exist_ok=True)
            command = [binary, "--bind", HOST, "--port", str(self.port), "--dir", str(self.dir),
                       "--daemonize", "yes", "--pidfile", str(self.pid_file), "--logfile", str(self.log_file),
                       "--save", "60 1000", "--appendonly", "no", "--protected-mode", "yes"]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RedisError(f"redis-server failed: {result.stdout}{result.stderr}{self.log_tail()}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ping():
                return self.status()
            time.sleep(0.1)
        raise RedisError(f"redis-server did not answer on {HOST}:{self.port} within {timeout_s:.0f}s:\n{self.log_tail()}")

    def ping(self) -> bool:
        """True when our server answers PING."""
        import redis  # noqa: PLC0415

        try:
            return bool(redis.Redis(host=HOST, port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM (redis saves and exits), SIGKILL after the timeout; True if one was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        terminate(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> RedisStatus:
        """Whether it runs, where."""
        pid = self.running_pid()
        return RedisStatus(pid is not None, pid, f"{HOST}:{self.port}", self.dir, self.log_file)

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the log, for errors."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no redis log yet)"
