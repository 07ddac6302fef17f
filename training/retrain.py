"""Training from the purchase archive, and the retrain step a scheduler runs.

`train_from_archive` reads a window of the archive (`features.archive`; default the last
`retrain_window_days` before its newest line), writes it as a canonical Parquet snapshot under
XSELL_HOME/training-data (named by its span and content hash: the run's `data.path`, so the
promotion gate can re-evaluate on exactly these lines later) and trains on it as `xsell train`
does. The feature store already holds these purchases' features (the feature pipeline folded
them as they arrived), so it is not backfilled unless asked.

`retrain` is one step for a scheduler: train from the archive, compare the new version with the
champion on the new version's held-out data (`training.promote.compare`), then promote it when it
wins, or make it the challenger (a live trial at `challenger_share`) when it does not. With
``live_trial`` a winner becomes the challenger too: the live experiment has the last word.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from features.archive import PurchaseArchive
from training.schedule import LoopStats, run_every
from xsell.errors import UserError
from xsell.history import history_rows
from xsell.settings import Settings

log = logging.getLogger(__name__)


class EmptyArchiveError(UserError, LookupError):
    """The archive holds no lines in the window asked for; the message says what to do."""


@dataclass(frozen=True)
class Snapshot:
    """A window of the archive written as a history file."""

    path: Path
    since: datetime
    until: datetime
    lines: int

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "path": str(self.path),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "lines": self.lines,
        }


def archive_snapshot(settings: Settings, since: datetime | None = None, until: datetime | None = None) -> Snapshot:
    """Write the archive's lines with ``since <= ordered_at < until`` as a canonical Parquet file
    (defaults: until just after the newest line, since `retrain_window_days` before that)."""
    archive = PurchaseArchive(settings.db_url)
    try:
        _, newest, count = archive.span()
        if newest is None:
            raise EmptyArchiveError(
                "the purchase archive is empty: run `xsell archive` beside the other services, or load an "
                "export with `xsell import --data FILE`, or train on a file with `xsell train --data FILE`"
            )
        until = until or newest + timedelta(microseconds=1)
        since = since or until - timedelta(days=settings.retrain_window_days)
        lines = archive.lines(since, until)
    finally:
        archive.close()
    if lines.empty:
        raise EmptyArchiveError(
            f"the purchase archive has no lines from {since.isoformat()} to {until.isoformat()} "
            f"({count} lines in all, the newest at {newest.isoformat()}): choose another --since/--until"
        )
    frame = history_rows(lines)
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()[:12]
    folder = settings.home / "training-data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"archive-{since:%Y%m%d}-{until:%Y%m%d}-{digest}.parquet"
    if not path.exists():
        frame.to_parquet(path, index=False)
    return Snapshot(path=path, since=since, until=until, lines=len(lines))


def train_from_archive(
    settings: Settings, since: datetime | None = None, until: datetime | None = None, backfill: bool = False
) -> dict:
    """Train, evaluate and register on a window of the archive (``training.commands.train``);
    with ``backfill``, the feature store is first rebuilt from the whole archive (after an import
    into a new system). Without offline pushes (`feast_push_offline` off: the production profile)
    the offline features are rebuilt from the whole archive first, the live fold state and online
    store left alone. Returns the training summary with the snapshot it trained on."""
    from training.commands import train  # noqa: PLC0415  (training's stages: LightGBM, MLflow, slow to import)

    if backfill or not settings.feast_push_offline:
        from features.backfill import backfill as run_backfill  # noqa: PLC0415  (Feast: slow to import)

        archive = PurchaseArchive(settings.db_url)
        oldest, _, _ = archive.span()
        archive.close()
        # without offline pushes (the production profile) the offline features come from the archive
        run_backfill(settings, archive_snapshot(settings, since=oldest).path, offline_only=not backfill)
    snapshot = archive_snapshot(settings, since, until)
    summary = train(settings, snapshot.path, backfill=False)
    return {**summary, "archive": snapshot.as_dict()}


def retrain(settings: Settings, live_trial: bool = False) -> dict:
    """Train from the archive and decide the new version's fate (see the module docstring).
    Returns the training summary with ``outcome`` (champion, challenger) and the comparison."""
    from models.registry import champion_version, open_tracking  # noqa: PLC0415  (MLflow: slow to import)
    from training.promote import compare, make_challenger, make_champion  # noqa: PLC0415  (MLflow: slow to import)

    client = open_tracking(settings)
    previous = champion_version(client, settings)
    summary = train_from_archive(settings)
    version = int(summary["model_version"])
    if previous is None:
        return {**summary, "outcome": "champion", "message": f"version {version} is the first champion"}
    gate = compare(settings, client, version, previous)
    result = {**summary, "gate": gate, "champion_version": previous}
    if gate["beats_champion"] and not live_trial:
        make_champion(client, settings, version, previous, "retrain: beat the champion on held-out data")
        return {**result, "outcome": "champion", "message": f"version {version} beat version {previous}: promoted"}
    make_challenger(
        client,
        settings,
        version,
        "retrain: live trial" + ("" if gate["beats_champion"] else " (did not beat the champion on held-out data)"),
    )
    verdict = "beat" if gate["beats_champion"] else "did not beat"
    share = (
        f"{settings.challenger_share:.0%} of customers"
        if settings.challenger_share
        else "no traffic until XSELL_CHALLENGER_SHARE is set"
    )
    return {
        **result,
        "outcome": "challenger",
        "message": f"version {version} {verdict} version {previous} on held-out data: challenger ({share})",
    }


def retrain_every(settings: Settings, every_s: float, stop: threading.Event, live_trial: bool = False) -> LoopStats:
    """`retrain` every ``every_s`` seconds until ``stop`` is set, the first run one interval from now."""

    def job() -> tuple[bool, dict[str, object]]:
        result = retrain(settings, live_trial)
        log.info("retrained", extra={k: result.get(k) for k in ("model_version", "outcome", "message")})
        return True, {k: result.get(k) for k in ("model_version", "run_id", "outcome", "message", "archive")}

    return run_every("retrain", job, every_s, stop, first_due=time.time() + every_s)
