"""Where a local server that runs as another system user keeps its state.

PostgreSQL refuses to run as root, so under root `infra.postgres` runs it as the `postgres` system
user, and that user must reach its data directory: it needs search permission on every folder above
it. A clone inside a private folder (`mktemp -d`, /root: mode 0700) does not give it that, so there
the state cannot live under XSELL_HOME. The folder is derived from the settings and from what is on
disk, never kept in memory, so `stack up`, `stack down` and `stack status` all find the same one:

1. `XSELL_SERVER_STATE_DIR/<server>` when that is set;
2. `XSELL_HOME/<server>` when not running as root (the server runs as the caller, as always);
3. under root, wherever the server's state already is (`SYSTEM_ROOT/<key>/<server>` first, then
   `XSELL_HOME/<server>`): it stays where it was created when the home's parents change mode
   later (made private, starting then fails saying so, rather than starting an empty server);
4. else `XSELL_HOME/<server>` if the user can reach XSELL_HOME, otherwise
   `SYSTEM_ROOT/<key>/<server>`, `<key>` being a hash of the resolved XSELL_HOME (two homes never
   share a folder; the file `SYSTEM_ROOT/<key>/XSELL_HOME` names the home it belongs to).

The server's folder belongs to its user with mode 0700; folders above it that are created on the
way are 0755, so the user can traverse them whatever root's umask. `python -m infra.server_state`
prints `SYSTEM_ROOT/<key>` of XSELL_HOME, for `make clean`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from xsell.settings import Settings, load_settings

SYSTEM_ROOT = Path("/var/lib/xsell")
HOME_RECORD = "XSELL_HOME"  # in SYSTEM_ROOT/<key>: the home whose state it is, for an operator


def home_key(home: Path) -> str:
    """A stable folder name for one XSELL_HOME: 16 hex digits of the SHA-256 of its resolved path."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]


def accessible_to(user: str, folder: Path, *, write: bool = False) -> bool:
    """True when `user` can enter `folder` (with `write`: create files in it), checked as that user
    (`runuser`, so ACLs and group membership count); False when the folder does not exist."""
    try:
        result = subprocess.run(
            ["runuser", "-u", user, "--", "test", "-w" if write else "-x", str(folder)],
            capture_output=True,
            check=False,
            cwd="/",
            stdin=subprocess.DEVNULL,
        )
    except OSError:  # no runuser: nothing can run as another user
        return False
    return result.returncode == 0


def server_dir(settings: Settings, server: str, user: str, initialised: str) -> Path:
    """The folder of `server` (e.g. postgres), which runs as `user` under root, chosen as the module
    docstring says; `initialised` is a path inside the folder that exists once the server's state
    was created there (e.g. data/PG_VERSION)."""
    if settings.server_state_dir is not None:
        return settings.server_state_dir / server
    in_home = settings.home / server
    if os.geteuid() != 0:
        return in_home
    in_system = SYSTEM_ROOT / home_key(settings.home) / server
    for existing in (in_system, in_home):
        if (existing / initialised).exists():
            return existing
    return in_home if accessible_to(user, settings.home) else in_system


def create_server_dir(folder: Path, user: str, home: Path) -> None:
    """Create `folder` (from `server_dir`) owned by `user` with mode 0700, and the missing folders
    above it with mode 0755; under SYSTEM_ROOT, record the home it belongs to."""
    for missing in reversed([parent for parent in folder.parents if not parent.exists()]):
        missing.mkdir(exist_ok=True)
        missing.chmod(0o755)
    folder.mkdir(exist_ok=True)
    shutil.chown(folder, user, user)
    folder.chmod(0o700)
    if folder.is_relative_to(SYSTEM_ROOT):
        (folder.parent / HOME_RECORD).write_text(f"{home.resolve()}\n")


def main() -> None:
    """`python -m infra.server_state`: the folder under SYSTEM_ROOT of XSELL_HOME's servers, used or
    not (`make clean` removes it with the home)."""
    print(SYSTEM_ROOT / home_key(load_settings().home))


if __name__ == "__main__":
    main()
