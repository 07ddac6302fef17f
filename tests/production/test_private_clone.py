"""The production profile starts from a clone inside a private (0700) folder, like /root or
`mktemp -d`: under root PostgreSQL runs as the `postgres` user, which cannot enter such a folder,
so its data goes to /var/lib/xsell/<hash of XSELL_HOME>; `xsell stack up --profile production`
starts PostgreSQL, Redis, the broker and the SMTP capture, they answer, and `xsell stack down`
leaves nothing running. The MLflow server (run as the caller, like Redis: the folder's mode does
not matter to it) is left out: it alone would double the test's time."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from infra.kafka.broker import free_port
from infra.local_server import port_in_use
from infra.postgres import SYSTEM_USER, PostgresCluster
from infra.server_state import SYSTEM_ROOT, home_key
from xsell.settings import REPO_ROOT, Settings, load_settings

PORTS = ("XSELL_REDIS_PORT", "XSELL_POSTGRES_PORT", "XSELL_SMTP_PORT")


def xsell(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `xsell ARGS` to completion on the test's environment; fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"xsell {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture
def private_clone() -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings and `xsell` environment of a home inside a fresh 0700 folder, on free ports; at the
    end the stack is stopped and the home and its server state removed."""
    private = Path(tempfile.mkdtemp(prefix="xsell-private-"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    home = private / "clone" / ".xsell"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("XSELL_", "MLFLOW_"))},
        "XSELL_PROFILE": "production",
        "XSELL_HOME": str(home),
        "XSELL_LOG_LEVEL": "WARNING",
        "XSELL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "XSELL_KAFKA_CONTROLLER_PORT": str(free_port()),
        "XSELL_KAFKA_JARS_DIR": str(load_settings().jars_dir),  # the cache `make run` fills
        "XSELL_API_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",  # set: no MLflow server
        **{variable: str(free_port()) for variable in PORTS},
    }
    settings = load_settings(
        profile="production",
        home=home,
        kafka_bootstrap=env["XSELL_KAFKA_BOOTSTRAP"],
        redis_port=int(env["XSELL_REDIS_PORT"]),
        postgres_port=int(env["XSELL_POSTGRES_PORT"]),
    )
    system_state = SYSTEM_ROOT / home_key(home)
    try:
        yield settings, env
    finally:
        subprocess.run([sys.executable, "-m", "cli.main", "stack", "down"], env=env, cwd=REPO_ROOT, check=False)
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(system_state, ignore_errors=True)
        with contextlib.suppress(OSError):  # only when no other home keeps its state there
            SYSTEM_ROOT.rmdir()


def test_the_production_profile_starts_and_stops_from_a_private_folder(
    private_clone: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = private_clone
    xsell(env, "stack", "up", "--profile", "production")

    cluster = PostgresCluster(settings)
    if os.geteuid() == 0:  # the postgres user cannot enter the 0700 folder: its state is elsewhere
        assert cluster.dir == SYSTEM_ROOT / home_key(settings.home) / "postgres"
        folder = cluster.dir.stat()
        assert folder.st_uid == pwd.getpwnam(SYSTEM_USER).pw_uid and stat.S_IMODE(folder.st_mode) == 0o700
        assert (cluster.dir.parent / "XSELL_HOME").read_text().strip() == str(settings.home.resolve())
    else:  # the server runs as the caller, who owns the folder: the state stays in the home
        assert cluster.dir == settings.home / "postgres"
    assert (cluster.data_dir / "PG_VERSION").exists()

    import psycopg2  # noqa: PLC0415  (the production profile's driver: only when it runs)

    connection = psycopg2.connect(
        host="127.0.0.1", port=settings.postgres_port, user=settings.postgres_user, dbname="xsell", connect_timeout=10
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE private_clone_check (id integer PRIMARY KEY)")
            cursor.execute("INSERT INTO private_clone_check VALUES (1)")
            cursor.execute("SELECT count(*) FROM private_clone_check")
            assert cursor.fetchone() == (1,)
    finally:
        connection.close()
    import redis  # noqa: PLC0415  (the production profile's driver: only when it runs)

    assert redis.Redis(host="127.0.0.1", port=settings.redis_port, socket_timeout=2).ping()

    rows = {row["component"]: row for row in json.loads(xsell(env, "stack", "status", "--json").stdout)}
    expected = {"postgres", "redis", "kafka", "smtp-capture"}
    assert expected <= {name for name, row in rows.items() if row["running"]}, rows
    assert str(cluster.data_dir) in rows["postgres"]["details"]
    pids = {name: rows[name]["pid"] for name in expected}

    stopped = xsell(env, "stack", "down").stderr  # the CLI talks on stderr
    assert all(name in stopped for name in expected), stopped
    alive = {name: pid for name, pid in pids.items() if psutil.pid_exists(pid)}
    alive = {n: p for n, p in alive.items() if psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
    assert not alive, f"still running after stack down: {alive}"
    places = (str(settings.home), str(cluster.dir))
    leftovers = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if any(place in command for place in places):
            leftovers.append((process.info["pid"], command))
    assert not leftovers, leftovers
    busy = [variable for variable in PORTS if port_in_use("127.0.0.1", int(env[variable]))]
    assert not busy and not port_in_use(settings.kafka_host, settings.kafka_port), busy
    assert not any(row["running"] for row in json.loads(xsell(env, "stack", "status", "--json").stdout))
