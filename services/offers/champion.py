"""The champion model the offer service serves, swapped in without a restart.

Every `refresh_s` the watcher asks the registry which version the champion alias points at; a new
version is loaded (model and candidate index) and swapped in atomically. When MLflow cannot be
reached, or loading fails, the last good model keeps serving and the failure is logged.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from training.recommend import Champion, load_champion
from training.tracking import champion_version, open_tracking
from xsell.settings import Settings

log = logging.getLogger(__name__)


class ChampionWatcher:
    """Holds the current champion; `current()` refreshes it at most every `refresh_s` seconds."""

    def __init__(self, settings: Settings, refresh_s: float | None = None) -> None:
        self.settings = settings
        self.refresh_s = settings.model_refresh_s if refresh_s is None else refresh_s
        self.champion: Champion | None = None
        self._checked_at = float("-inf")
        self._scratch = tempfile.TemporaryDirectory(prefix="xsell-champion-")

    def current(self) -> Champion | None:
        """The champion to serve now (None until a model was ever registered and loaded)."""
        if time.monotonic() - self._checked_at >= self.refresh_s:
            self._checked_at = time.monotonic()
            self._refresh()
        return self.champion

    def _refresh(self) -> None:
        try:
            version = champion_version(open_tracking(self.settings), self.settings)
            if version is None or (self.champion is not None and self.champion.version == version):
                return
            scratch = Path(self._scratch.name) / f"v{version}"
            champion = load_champion(self.settings, scratch)
        except Exception as error:  # noqa: BLE001  (any failure of the registry must not stop serving)
            log.warning("champion refresh failed; serving the last good model",
                        extra={"error": repr(error)[:300], "serving": getattr(self.champion, "version", None)})
            return
        previous = getattr(self.champion, "version", None)
        self.champion = champion
        log.info("serving champion", extra={"version": champion.version, "previous": previous})

    def close(self) -> None:
        """Remove downloaded artifacts."""
        self._scratch.cleanup()
