"""A local redis-server for the production profile: loopback, own port, data in XSELL_HOME/redis.

Started daemonized with a pid file (`HOME/redis/redis.pid`) and log (`HOME/redis/redis.log`);
`stop` asks it to shut down (SIGTERM: it saves its RDB snapshot first). A managed Redis in a real
deployment is configured with `XSELL_REDIS_URL`; then nothing here runs.
"""

from __future__ import annotations

import shutil
import subprocess

import psutil

from infra.local_server import LocalServer, ServerStatus
from xsell.settings import Settings

HOST = "127.0.0.1"


class RedisError(RuntimeError):
    """redis-server could not start; the message says why and what to do."""


RedisStatus = ServerStatus  # what `stack status` reports


class RedisServer:
    """One redis-server per XSELL_HOME, managed through its pid file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "redis"
        self.pid_file = self.dir / "redis.pid"
        self.log_file = self.dir / "redis.log"
        self.port = settings.redis_port
        self.server = LocalServer("redis-server", self.pid_file, self.log_file, RedisError, self._owns, tail_lines=20)

    def _owns(self, process: psutil.Process, _recorded: str) -> bool:
        return "redis-server" in process.name() and f":{self.port}" in " ".join(process.cmdline())

    def running_pid(self) -> int | None:
        """Pid of our redis-server if alive (checked against its command line and port)."""
        return self.server.running_pid()

    def start(self, timeout_s: float = 20.0) -> RedisStatus:
        """Start redis-server daemonized (idempotent) and wait until it answers PING."""
        if self.running_pid() is None:
            binary = shutil.which("redis-server")
            if binary is None:
                raise RedisError("redis-server is not installed: run `make production-deps`")
            self.server.ensure_port_free(HOST, self.port, "XSELL_REDIS_PORT")
            self.dir.mkdir(parents=True, exist_ok=True)
            command = [
                binary,
                "--bind",
                HOST,
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pid_file),
                "--logfile",
                str(self.log_file),
                "--save",
                "60 1000",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RedisError(f"redis-server failed: {result.stdout}{result.stderr}{self.log_tail()}")
        self.server.wait_ready(self.ping, timeout_s, waiting_for=f"answer on {HOST}:{self.port}")
        return self.status()

    def ping(self) -> bool:
        """True when our server answers PING."""
        import redis  # noqa: PLC0415  (the production profile's driver: only when it runs)

        try:
            return bool(redis.Redis(host=HOST, port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM (redis saves and exits), SIGKILL after the timeout; True if one was running."""
        return self.server.stop(timeout_s)

    def status(self) -> RedisStatus:
        """Whether it runs, where."""
        return self.server.status(f"{HOST}:{self.port}", self.dir)

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the log, for errors."""
        return self.server.log_tail(lines)
