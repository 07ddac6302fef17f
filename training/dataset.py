"""Training data for the ranker: labelled rows of (trigger, candidate), features from
``models.features`` (the one feature path that serving uses too).

Training triggers come in several windows inside the training period (labels strictly before the
cutoff, see ``training.protocol``), candidates from one index per window built from the lines
before it (no leakage), label 1 when the candidate is in the trigger's truth. Triggers whose
candidates hold no positive are dropped (they carry no gradient in lambdarank). Several windows
(``window_days`` apart, as many as fit after ``min_history_days`` of history, at most
``max_windows``) and up to ``orders_per_customer`` triggers per customer and window give the
ranker enough groups.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.candidates import CandidateConfig, CandidateGenerator
from models.features import candidates_with_context, feature_rows_from_store
from models.index import CandidateIndex, IndexConfig
from training.protocol import build_training_triggers
from xsell.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowRows:
    """Where one training window's rows are in ``TrainingSet.rows`` (``start``..``end``), and what
    made them: each trigger of the window with its truth, before triggers without a positive
    candidate were dropped. Another training set on the same lines whose window has the same
    triggers and truths has the same rows (its index, context and features only look before)."""

    start: int
    end: int
    truths: frozenset[tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of the training set (none is tuned to one data set)."""

    horizon_days: int = 30
    window_days: int = 30
    max_windows: int = 8
    min_history_days: int = 60
    orders_per_customer: int = 3
    n_candidates: int = 100

    def candidate_config(self) -> CandidateConfig:
        """The candidate generator's settings for ranker rows."""
        return CandidateConfig(n_candidates=self.n_candidates)


@dataclass(frozen=True)
class TrainingSummary:
    """The counts of a training set that reports and run parameters show."""

    rows: int
    triggers: int
    windows: int
    positives: int


@dataclass
class TrainingSet:
    """Labelled ranker rows (sorted by window, trigger, candidate rank) and their triggers, with
    where each window's rows are (what a refit on the same lines may reuse)."""

    rows: pd.DataFrame
    triggers: pd.DataFrame
    windows: int
    window_rows: dict[pd.Timestamp, WindowRows] = field(default_factory=dict)
    released: TrainingSummary | None = None

    def summary(self) -> TrainingSummary:
        """Rows, triggers, windows and positive rows (as they were before ``release_rows``)."""
        if self.released is not None:
            return self.released
        positives = int(self.rows["label"].sum()) if len(self.rows) else 0
        return TrainingSummary(len(self.rows), len(self.triggers), self.windows, positives)

    def release_rows(self) -> None:
        """Drop the rows, keeping their ``summary``: once a refit has taken over what it reuses,
        the held-out rows need not stay in memory beside the refit's."""
        self.released = self.summary()
        self.rows = self.rows.iloc[:0]
        self.window_rows = {}

    @property
    def groups(self) -> np.ndarray:
        """Rows per trigger, in row order (LightGBM's ``group``)."""
        return self.rows.groupby("trigger_id", sort=False).size().to_numpy()

    def reusable(self, window_cutoff: pd.Timestamp, triggers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """This set's rows of the window at ``window_cutoff``, and the ones of ``triggers`` (that
        window's, before dropping) it kept, when they are this window's with the same truths; else None."""
        window = self.window_rows.get(window_cutoff)
        if window is None or window.truths != _truths(triggers):
            return None
        rows = self.rows.iloc[window.start : window.end]
        kept = self.triggers.loc[self.triggers["window_cutoff"] == window_cutoff, "trigger_id"]
        return rows, triggers[triggers["trigger_id"].isin(set(kept))]  # with the caller's label_end


def window_count(lines: pd.DataFrame, cutoff: pd.Timestamp, config: DatasetConfig) -> int:
    """How many training windows fit between ``min_history_days`` after the data's start and the
    cutoff (at least 1, at most ``max_windows``)."""
    span = (cutoff - lines["ordered_at"].min()).total_seconds() / 86_400 - config.min_history_days
    return int(max(1, min(config.max_windows, span // config.window_days)))


def build_training_set(
    settings: Settings,
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    config: DatasetConfig | None = None,
    index_config: IndexConfig | None = None,
    reuse: TrainingSet | None = None,
) -> TrainingSet:
    """Labelled rows from training triggers strictly before ``cutoff`` (features from Feast).
    ``reuse``: another training set on the same lines; its windows with the same triggers and
    truths keep their rows, so only the other windows are built."""
    config = config or DatasetConfig()
    windows = window_count(lines, cutoff, config)
    trigger_set = build_training_triggers(
        lines, cutoff, config.horizon_days, windows, config.window_days, config.orders_per_customer
    )
    triggers = trigger_set.triggers
    log.info("training triggers", extra={"triggers": len(triggers), "windows": windows})
    by_window = {pd.Timestamp(at): group for at, group in triggers.groupby("window_cutoff", sort=True)}
    kept = {at: reuse.reusable(at, group) for at, group in by_window.items()} if reuse is not None else {}
    new = {at: group for at, group in by_window.items() if kept.get(at) is None}
    new_rows, new_triggers = _labelled_rows(settings, lines[lines["ordered_at"] < cutoff], new, index_config, config)
    new_windows = new_rows["trigger_id"].map(new_triggers.set_index("trigger_id")["window_cutoff"])
    parts: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    for at in by_window:
        known = kept.get(at)
        parts.append(
            known
            if known is not None
            else (new_rows[(new_windows == at).to_numpy()], new_triggers[new_triggers["window_cutoff"] == at])
        )
    if len(new) < len(by_window):
        log.info("training windows reused", extra={"reused": len(by_window) - len(new), "windows": len(by_window)})
    rows = pd.concat([r for r, _ in parts], ignore_index=True) if parts else new_rows
    window_rows, start = {}, 0
    for (at, group), (part, _) in zip(by_window.items(), parts, strict=True):
        window_rows[at] = WindowRows(start=start, end=start + len(part), truths=_truths(group))
        start += len(part)
    kept_triggers = pd.concat([t for _, t in parts], ignore_index=True) if parts else new_triggers
    return TrainingSet(rows=rows, triggers=kept_triggers, windows=windows, window_rows=window_rows)


def _labelled_rows(
    settings: Settings,
    lines: pd.DataFrame,
    windows: dict[pd.Timestamp, pd.DataFrame],
    index_config: IndexConfig | None,
    config: DatasetConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature rows with labels of the triggers of ``windows`` (by window_cutoff), in window order,
    and the triggers kept: those with at least one positive candidate."""
    empty = pd.DataFrame({"trigger_id": pd.Series([], dtype=object)})
    if not windows:
        return empty, pd.DataFrame(columns=["trigger_id", "window_cutoff"])
    triggers = pd.concat(list(windows.values()), ignore_index=True)
    found = candidates_per_window(lines, triggers, index_config, config.candidate_config())
    candidates = _label(pd.concat(list(found.values()), ignore_index=True), triggers)
    del found
    positives = candidates.groupby("trigger_id")["label"].transform("max") > 0
    candidates = candidates[positives.to_numpy()]
    triggers = triggers[triggers["trigger_id"].isin(set(candidates["trigger_id"]))].reset_index(drop=True)
    rows = feature_rows_from_store(settings, candidates, triggers)
    rows["label"] = candidates["label"].to_numpy()
    return rows, triggers


def candidates_per_window(
    lines: pd.DataFrame,
    triggers: pd.DataFrame,
    index_config: IndexConfig | None,
    config: CandidateConfig,
) -> dict[pd.Timestamp, pd.DataFrame]:
    """Candidates with context for training triggers without leakage, per ``window_cutoff`` in time
    order: one index per window, built from the lines before it, serves the triggers of that window."""
    found: dict[pd.Timestamp, pd.DataFrame] = {}
    for window_cutoff, group in triggers.groupby("window_cutoff", sort=True):
        at = pd.Timestamp(window_cutoff)
        index = CandidateIndex.build(lines, at, index_config)
        found[at] = candidates_with_context(CandidateGenerator(index, config), group)
    return found


def _truths(triggers: pd.DataFrame) -> frozenset[tuple[str, tuple[str, ...]]]:
    """Each trigger with its truth: what a window's rows depend on besides the lines before it."""
    return frozenset(zip(triggers["trigger_id"], triggers["truth"], strict=True))


def _label(candidates: pd.DataFrame, triggers: pd.DataFrame) -> pd.DataFrame:
    truth = triggers[["trigger_id", "truth"]].explode("truth").dropna()
    positive = pd.MultiIndex.from_arrays([truth["trigger_id"], truth["truth"]])
    pairs = pd.MultiIndex.from_arrays([candidates["trigger_id"], candidates["product_id"]])
    return candidates.assign(label=pairs.isin(positive).astype(int)).reset_index(drop=True)
