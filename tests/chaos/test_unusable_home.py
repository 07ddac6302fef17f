"""An unusable XSELL_HOME (a file where the folder should be; a full file system): the services and
`stack up` refuse to start with a clear error that names the path, and a non-zero exit code."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.kafka.broker import free_port
from tests.chaos.conftest import figures
from xsell.settings import REPO_ROOT, load_settings

COMMANDS = {"stack-up": ["stack", "up"], "offers": ["offers"], "deliver": ["deliver"]}


@pytest.fixture(params=["file-as-home", "full-disk"])
def unusable_home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A home that cannot be written to."""
    if request.param == "file-as-home":
        home = tmp_path / "home"
        home.write_text("a file, not a folder\n")
        yield home
        return
    home = tmp_path / "tiny"
    home.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(home)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        try:
            with (home / "filler").open("wb") as filler:
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_unusable_home_is_a_clear_error_on_start(
    unusable_home: Path, command: str, request: pytest.FixtureRequest
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("XSELL_", "MLFLOW_"))},
        "XSELL_HOME": str(unusable_home),
        "XSELL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "XSELL_KAFKA_CONTROLLER_PORT": str(free_port()),
        "XSELL_KAFKA_JARS_DIR": str(load_settings().jars_dir),
        "XSELL_SMTP_PORT": str(free_port()),
        "XSELL_KAFKA_START_TIMEOUT_S": "30",
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *COMMANDS[command]],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    figures(
        test="unusable_home",
        command=command,
        home_kind=request.node.callspec.params["unusable_home"],
        home=str(unusable_home),
        exit=result.returncode,
        traceback="Traceback" in output,
        tail=output.strip().splitlines()[-1:] if output.strip() else [],
    )
    assert result.returncode != 0
    assert str(unusable_home) in output, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
