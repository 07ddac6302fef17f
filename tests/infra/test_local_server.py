"""The shared lifecycle of a local server, with real processes: launch, pid file, readiness, stop."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from infra.kafka.broker import free_port
from infra.local_server import LocalServer, port_in_use


class ToyError(RuntimeError):
    pass


def listener(port: int) -> list[str]:
    """A server that listens on `port` until SIGTERM."""
    code = (
        "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); time.sleep(60)"
    )
    return [sys.executable, "-c", code]


def toy(tmp_path: Path) -> LocalServer:
    return LocalServer("toy", tmp_path / "run" / "toy.pid", tmp_path / "logs" / "toy.log", ToyError)


def test_launch_waits_until_the_port_answers_and_stop_ends_it(tmp_path: Path) -> None:
    server, port = toy(tmp_path), free_port()
    process = server.launch(listener(port))
    server.wait_ready(lambda: port_in_use("127.0.0.1", port), 15, waiting_for="listen", process=process)

    assert server.running_pid() == process.pid
    assert server.pid_file.read_text().split("\n", 1) == [str(process.pid), " ".join(listener(port))]
    with pytest.raises(ToyError, match=f"port {port} on 127.0.0.1 is taken by another process: stop it or set X_PORT"):
        server.ensure_port_free("127.0.0.1", port, "X_PORT")

    assert server.stop(10) is True
    process.wait(5)
    assert not server.pid_file.exists() and server.running_pid() is None
    assert not port_in_use("127.0.0.1", port)
    assert server.stop(10) is False
    assert "listening" in server.log_tail()


def test_a_stale_or_foreign_pid_file_is_not_running(tmp_path: Path) -> None:
    server = toy(tmp_path)
    server.pid_file.parent.mkdir(parents=True)
    server.pid_file.write_text(f"{psutil.Process().pid}\nsome other command")  # alive, but not ours
    assert server.running_pid() is None
    server.pid_file.write_text("not a pid")
    assert server.running_pid() is None
    assert server.stop(1) is False and not server.pid_file.exists()  # the stale file is removed
    assert server.log_tail() == "(no toy log yet)"


def test_a_server_that_exits_early_raises_with_its_log_tail(tmp_path: Path) -> None:
    server = toy(tmp_path)
    process = server.launch([sys.executable, "-c", "import sys; print('bad config', flush=True); sys.exit(3)"])
    with pytest.raises(ToyError, match="toy exited with code 3:\nbad config"):
        server.wait_ready(lambda: False, 15, waiting_for="listen", process=process)
    assert not server.pid_file.exists()


def test_a_server_that_never_answers_times_out_and_is_stopped_when_asked(tmp_path: Path) -> None:
    server = toy(tmp_path)
    process = server.launch([sys.executable, "-c", "import time; time.sleep(60)"])
    with pytest.raises(ToyError, match="toy did not listen within 1s"):
        server.wait_ready(lambda: False, 1, waiting_for="listen", process=process, stop_on_timeout=True)
    assert process.poll() is not None and not server.pid_file.exists()
