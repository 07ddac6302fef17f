"""`xsell` run as a user runs it: a subprocess with its own XSELL_HOME and none of the caller's
XSELL_ or MLFLOW_ variables, so a developer's environment cannot change what a CLI test sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def xsell(*args: str, home: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``xsell ARGS`` (in ``home`` when given, with ``env`` on top); the finished process."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith(("MLFLOW_", "XSELL_"))}
    extra = {"XSELL_HOME": str(home)} if home is not None else {}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env={**clean, **extra, **(env or {})},
        timeout=120,
        check=False,
    )
