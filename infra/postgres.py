"""A local PostgreSQL cluster for the production profile: loopback, own port, data in DIR/postgres.

`initdb` once into `DIR/postgres/data` (superuser `XSELL_POSTGRES_USER`, trust authentication on
loopback only, no Unix socket), `pg_ctl start|stop`, and the databases `mlflow` (MLflow tracking
server) and `xsell` (offer facts, preferences, in-app offers). PostgreSQL refuses to run as root:
under root every server command runs as the `postgres` system user (`runuser -u postgres`) and
the folder belongs to it (mode 0700). That user cannot reach a home inside a private folder (a
clone under /root or `mktemp -d`), so `DIR` comes from `infra.server_state.server_dir`:
`XSELL_SERVER_STATE_DIR` if set, else XSELL_HOME, or under root /var/lib/xsell/<hash of
XSELL_HOME> when the `postgres` user cannot reach XSELL_HOME. Starting fails, saying so, only when
the chosen folder is still out of its reach (an explicit `XSELL_SERVER_STATE_DIR` inside a private
folder, or a cluster whose parents were made private after it was created). A managed PostgreSQL is configured with `XSELL_DATABASE_URL` (and the
MLflow server's own backend store); then nothing here runs.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import psutil

from infra.local_server import LocalServer, ServerStatus
from infra.server_state import accessible_to, create_server_dir, server_dir
from xsell.settings import Settings

HOST = "127.0.0.1"
DATABASES = ("mlflow", "xsell")
SYSTEM_USER = "postgres"


class PostgresError(RuntimeError):
    """The cluster could not be created or started; the message says why and what to do."""


PostgresStatus = ServerStatus  # what `stack status` reports


def bin_dir() -> Path:
    """Folder of initdb/pg_ctl: Debian's newest /usr/lib/postgresql/N/bin, else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    if (pg_ctl := shutil.which("pg_ctl")) is not None:
        return Path(pg_ctl).resolve().parent
    raise PostgresError("PostgreSQL is not installed: run `make production-deps`")


class PostgresCluster:
    """One cluster per XSELL_HOME, managed with pg_ctl."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = server_dir(settings, "postgres", SYSTEM_USER, initialised="data/PG_VERSION")
        self.data_dir = self.dir / "data"
        self.log_file = self.dir / "postgres.log"
        self.port = settings.postgres_port
        # postmaster.pid is the server's own (its first line is the pid); pg_ctl starts and stops it
        self.server = LocalServer(
            "postgres", self.data_dir / "postmaster.pid", self.log_file, PostgresError, _is_postmaster, tail_lines=20
        )

    # -- commands -------------------------------------------------------------------------------
    def _as_owner(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", SYSTEM_USER, "--", *command] if os.geteuid() == 0 else command

    def _run(self, command: list[str], what: str) -> None:
        result = subprocess.run(
            self._as_owner(command), capture_output=True, text=True, check=False, cwd="/", stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise PostgresError(f"{what} failed:\n{result.stdout}{result.stderr}\n{self.log_tail()}")

    def init(self) -> None:
        """initdb on first start (PG_VERSION marks an initialised cluster)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        initdb = bin_dir() / "initdb"
        if os.geteuid() == 0:
            create_server_dir(self.dir, SYSTEM_USER, self.settings.home)
            self._check_reachable()
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._run(
            [
                str(initdb),
                "-D",
                str(self.data_dir),
                "-U",
                self.settings.postgres_user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            "initdb",
        )

    def _check_reachable(self) -> None:
        """The postgres user must be able to write the folder: every folder above it traversable."""
        if not accessible_to(SYSTEM_USER, self.dir, write=True):
            raise PostgresError(
                f"the `postgres` user cannot write {self.dir}: make every folder above it traversable "
                "(chmod o+x), or set XSELL_SERVER_STATE_DIR to a folder it can reach"
            )

    def start(self, timeout_s: float = 60.0) -> PostgresStatus:
        """initdb if needed, start (idempotent), create the databases."""
        if self.running_pid() is None:
            self.server.ensure_port_free(HOST, self.port, "XSELL_POSTGRES_PORT")
            self.init()
            options = f"-p {self.port} -h {HOST} -k ''"
            self._run(
                [
                    str(bin_dir() / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(timeout_s)),
                    "start",
                ],
                "pg_ctl start",
            )
        self.create_databases()
        return self.status()

    def create_databases(self) -> None:
        """Create `mlflow` and `xsell` if missing."""
        import psycopg2  # noqa: PLC0415  (the production profile's driver: only when it runs)

        connection = psycopg2.connect(
            host=HOST, port=self.port, user=self.settings.postgres_user, dbname="postgres", connect_timeout=10
        )
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                for name in DATABASES:
                    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cursor.fetchone() is None:
                        cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()

    def stop(self, timeout_s: float = 60.0) -> bool:
        """pg_ctl stop -m fast; True if it was running."""
        if self.running_pid() is None:
            return False
        self._run(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout_s)),
                "stop",
            ],
            "pg_ctl stop",
        )
        return True

    # -- state ----------------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        """Pid of the postmaster of our data dir, if alive."""
        return self.server.running_pid()

    def status(self) -> PostgresStatus:
        """Whether it runs, where."""
        return self.server.status(f"{HOST}:{self.port}", self.data_dir)

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the server log, for errors."""
        return self.server.log_tail(lines)


def _is_postmaster(process: psutil.Process, _recorded: str) -> bool:
    return "postgres" in process.name()
