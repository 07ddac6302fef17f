"""`xsell index refresh`: a fresh candidate index for the champion between retrains.

The candidate index logged with a trained model knows the purchases up to its training data. The
refresh rebuilds it from every order line archived so far (`features.archive`: the history
imported or backfilled, and what the archive service took from `purchases`), as of the newest
line plus 1 µs, with the
index settings of the champion's own index. It logs the index as the `candidate_index` artifact of
a new run in the training experiment (tags `xsell.kind=index_refresh`, `index.as_of`,
`index.items`, `model.version`) and points the champion version at it with the model-version tag
`candidate_index.run_id`. The offer service sees the tag change and swaps the index in without a
restart; the booster stays the champion's.

`run_every` repeats it on an interval (`--every 1d`, `training.schedule`) until stopped, logging
each run; a failed run is logged and retried on the next tick. The first run is due one interval after the serving index
was logged, so a restart of the service does not rebuild at once.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.archive import PurchaseArchive
from models.champion import load_champion
from models.index import CandidateIndex
from models.index_source import INDEX_RUN_TAG, index_run_id
from models.registry import INDEX_ARTIFACT, champion_version, open_tracking
from training.schedule import LoopStats
from training.schedule import run_every as run_every_job
from xsell.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
KIND_TAG, KIND = "xsell.kind", "index_refresh"


class RefreshError(RuntimeError):
    """The refresh cannot run (no champion, no order lines); the message says what to do."""


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did: the new index run (None when the serving index already knew every line)."""

    run_id: str | None
    as_of: str
    items: int
    version: int
    lines: int
    orders: int
    previous_run_id: str
    previous_as_of: str
    refreshed: bool
    seconds: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def refresh_index(settings: Settings) -> RefreshResult:
    """Build the champion's candidate index from every order line archived, log it
    as a new run and tag the champion version with it (see the module docstring)."""
    started = time.perf_counter()
    client = open_tracking(settings)
    if champion_version(client, settings) is None:
        raise RefreshError(f"{settings.model_name} has no '{settings.champion_alias}' version: train a model first")
    archive = PurchaseArchive(settings.db_url)
    try:
        lines = archive.lines()
    finally:
        archive.close()
    if lines.empty:
        raise RefreshError(
            "the purchase archive holds no order lines: import history (`xsell import --data FILE`) "
            "or run the archive service (`xsell archive`)"
        )
    as_of = lines["ordered_at"].max() + pd.Timedelta(microseconds=1)
    with tempfile.TemporaryDirectory(prefix="xsell-index-refresh-") as scratch:
        champion = load_champion(settings, Path(scratch) / "champion")
        previous = {
            "previous_run_id": champion.index_run_id,
            "previous_as_of": champion.index_as_of.isoformat(),
            "version": champion.version,
        }
        if champion.index_as_of >= as_of:
            log.info("index refresh: the serving index knows every line", extra={**previous, "lines": len(lines)})
            return RefreshResult(
                run_id=None,
                as_of=champion.index_as_of.isoformat(),
                items=champion.index.size,
                lines=len(lines),
                orders=champion.index.orders,
                refreshed=False,
                seconds=round(time.perf_counter() - started, 2),
                **previous,
            )
        index = CandidateIndex.build(lines, as_of, champion.index.config)
        run_id = _log_index(
            client,
            settings,
            index,
            champion.version,
            champion.index_run_id,
            len(lines),
            index.save(Path(scratch) / INDEX_ARTIFACT),
        )
    client.set_model_version_tag(settings.model_name, str(champion.version), INDEX_RUN_TAG, run_id)
    result = RefreshResult(
        run_id=run_id,
        as_of=as_of.isoformat(),
        items=index.size,
        lines=len(lines),
        orders=index.orders,
        refreshed=True,
        seconds=round(time.perf_counter() - started, 2),
        **previous,
    )
    log.info("index refreshed", extra=result.as_dict())
    return result


def _log_index(
    client: MlflowClient,
    settings: Settings,
    index: CandidateIndex,
    version: int,
    previous_run: str,
    lines: int,
    index_dir: Path,
) -> str:
    """A finished run holding the index as `candidate_index`; returns its id."""
    experiment = client.get_experiment_by_name(settings.experiment_name)
    assert experiment is not None, "open_tracking creates the experiment"
    tags = {
        KIND_TAG: KIND,
        "index.as_of": index.as_of.isoformat(),
        "index.items": str(index.size),
        "index.orders": str(index.orders),
        "index.lines": str(lines),
        "model.version": str(version),
        "index.previous_run_id": previous_run,
    }
    run = client.create_run(
        experiment.experiment_id,
        tags=tags,
        run_name=f"index-refresh-v{version}",
    )
    try:
        for key, value in asdict(index.config).items():
            client.log_param(run.info.run_id, f"index.{key}", value)
        client.log_artifacts(run.info.run_id, str(index_dir), artifact_path=INDEX_ARTIFACT)
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def first_due(settings: Settings, every_s: float, now: float | None = None) -> float:
    """When the first refresh of a service loop is due: one interval after the serving index's
    run started (now, when the registry cannot say)."""
    now = time.time() if now is None else now
    try:
        client = open_tracking(settings)
        version = champion_version(client, settings)
        if version is None:
            return now
        mv = client.get_model_version(settings.model_name, str(version))
        return client.get_run(index_run_id(mv)).info.start_time / 1000 + every_s
    except Exception as error:  # noqa: BLE001  (the loop retries; the registry may be down for now)
        log.warning("index refresh: serving index unknown, refreshing now", extra={"error": repr(error)[:300]})
        return now


def run_every(
    settings: Settings,
    every_s: float,
    stop: threading.Event,
    refresh: Callable[[Settings], RefreshResult] = refresh_index,
) -> LoopStats:
    """Refresh every `every_s` seconds until `stop` is set (`training.schedule.run_every`: a failed
    run is logged and retried on the next tick)."""

    def job() -> tuple[bool, dict[str, object]]:
        result = refresh(settings)
        return result.refreshed, result.as_dict()

    return run_every_job("index refresh", job, every_s, stop, first_due(settings, every_s))
