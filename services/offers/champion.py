"""The champion model the offer service serves, swapped in without a restart.

The first `current()` loads the champion; from then on a background thread asks the registry every
`refresh_s` which version the champion alias points at, loads a new version (model, candidate
index, lookup tables) and swaps it in atomically. Batches never wait for the registry: a slow or
unreachable MLflow costs no latency. When MLflow cannot be reached, or loading fails, the last good
model keeps serving and the failure is logged.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path

from models.champion import Champion, load_champion
from models.registry import champion_version, open_tracking
from xsell.settings import Settings

log = logging.getLogger(__name__)


class ChampionWatcher:
    """Holds the current champion; `current()` refreshes it at most every `refresh_s` seconds."""

    def __init__(self, settings: Settings, refresh_s: float | None = None) -> None:
        self.settings = settings
        self.refresh_s = settings.model_refresh_s if refresh_s is None else refresh_s
        self.champion: Champion | None = None
        self._scratch = tempfile.TemporaryDirectory(prefix="xsell-champion-")
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def current(self) -> Champion | None:
        """The champion to serve now (None until a model was ever registered and loaded). The
        first call loads it and starts the background watcher."""
        if self._watcher is None:
            self._refresh()
            self._watcher = threading.Thread(target=self._watch, name="champion-watcher", daemon=True)
            self._watcher.start()
        return self.champion

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self._refresh()

    def _refresh(self) -> None:
        try:
            version = champion_version(open_tracking(self.settings), self.settings)
            if version is None or (self.champion is not None and self.champion.version == version):
                return
            scratch = Path(self._scratch.name) / f"v{version}"
            champion = load_champion(self.settings, scratch)
            champion.prepare()
        except Exception as error:  # noqa: BLE001  (any failure of the registry must not stop serving)
            log.warning("champion refresh failed; serving the last good model",
                        extra={"error": repr(error)[:300], "serving": getattr(self.champion, "version", None)})
            return
        previous = getattr(self.champion, "version", None)
        self.champion = champion
        log.info("serving champion", extra={"version": champion.version, "previous": previous})

    def close(self) -> None:
        """Stop the watcher and remove downloaded artifacts."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=60)
        self._scratch.cleanup()
