"""The champion model the offer service serves, swapped in without a restart.

The first `current()` loads the champion; from then on a background thread asks the registry every
`refresh_s` which version the champion alias points at and which run's candidate index that
version serves (its `candidate_index.run_id` tag, set by `xsell index refresh`), loads a new
version or a refreshed index (model, candidate index, lookup tables) and swaps it in atomically. Batches never wait for the registry: a slow or
unreachable MLflow costs no latency. When MLflow cannot be reached, or loading fails, the last good
model keeps serving and the failure is logged.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from models.champion import Champion, load_champion
from models.index import CandidateIndex
from models.index_source import index_run_id
from models.registry import open_tracking, version_number
from xsell.metrics import INDEX_AS_OF, MODEL_REGISTERED_AT, MODEL_VERSION
from xsell.settings import Settings

log = logging.getLogger(__name__)

SERVING_GAUGES = (MODEL_VERSION, INDEX_AS_OF, MODEL_REGISTERED_AT)  # what a watcher sets on /metrics


class ChampionWatcher:
    """Holds the model a registry alias points at (the champion by default, or the challenger);
    `current()` refreshes it at most every `refresh_s` seconds. When the alias is removed, the
    watcher serves nothing (None) from the next refresh on."""

    def __init__(self, settings: Settings, refresh_s: float | None = None, alias: str | None = None) -> None:
        self.settings = settings
        self.refresh_s = settings.model_refresh_s if refresh_s is None else refresh_s
        self.alias = alias or settings.champion_alias
        self.is_champion = self.alias == settings.champion_alias
        self.variant = "champion" if self.is_champion else "challenger"  # the label of its gauges
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

    def _registered(self) -> tuple[int, str] | None:
        """(version, index run id) the champion alias points at now; None when the alias is unset."""
        from mlflow.exceptions import MlflowException  # noqa: PLC0415  (MLflow: slow to import)

        client = open_tracking(self.settings)
        try:
            mv = client.get_model_version_by_alias(self.settings.model_name, self.alias)
        except MlflowException as error:
            if error.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                return None
            raise
        return version_number(mv.version), index_run_id(mv)

    def _refresh(self) -> None:
        try:
            registered = self._registered()
            serving = self.champion
            if registered is None and not self.is_champion and serving is not None:
                log.info("challenger alias removed: no challenger serves", extra={"previous": serving.version})
                self.champion = None
                MODEL_REGISTERED_AT.remove(self.variant)
                return
            if registered is None or (serving is not None and (serving.version, serving.index_run_id) == registered):
                return
            version, index_run = registered
            scratch = Path(self._scratch.name) / f"v{version}-{index_run}"
            champion = load_champion(self.settings, scratch, self.alias)
            champion.prepare()
        except Exception as error:  # noqa: BLE001  (any failure of the registry must not stop serving)
            log.warning(
                "champion refresh failed; serving the last good model",
                extra={"error": repr(error)[:300], "serving": getattr(self.champion, "version", None)},
            )
            return
        previous = self.champion
        self.champion = champion
        MODEL_REGISTERED_AT.labels(self.variant).set(champion.registered_at)
        if self.is_champion:
            MODEL_VERSION.set(champion.version)
            INDEX_AS_OF.set(champion.index_as_of.timestamp())
        log.info(
            f"serving {self.alias}",
            extra={
                "version": champion.version,
                "index_run_id": champion.index_run_id,
                "index_as_of": champion.index_as_of.isoformat(),
                "previous": getattr(previous, "version", None),
                "previous_index_run_id": getattr(previous, "index_run_id", None),
            },
        )

    def swap_index(self, index: CandidateIndex) -> None:
        """Serve the current champion's booster with another candidate index (one rebuilt from
        newer purchases), prepared before the swap."""
        if self.champion is None:
            raise LookupError("no champion is loaded: nothing to give the index to")
        champion = replace(self.champion, index=index)
        champion.prepare()
        self.champion = champion
        log.info(
            "serving a rebuilt candidate index", extra={"version": champion.version, "as_of": index.as_of.isoformat()}
        )

    def close(self) -> None:
        """Stop the watcher and remove downloaded artifacts."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=60)
        self._scratch.cleanup()
