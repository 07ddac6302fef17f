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
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from models.candidates import CandidateConfig, CandidateGenerator
from models.features import (
    FEATURE_COLUMNS,
    candidates_with_context,
    feature_matrix,
    fetch_customer_features,
    product_features_at,
)
from models.index import CandidateIndex, IndexConfig
from training.protocol import build_training_triggers
from xsell.settings import Settings

log = logging.getLogger(__name__)


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
class WindowBlock:
    """One training window's labelled rows, sorted by trigger and candidate rank: ``keys``
    (trigger_id, product_id, offer_type, reason, label) and ``values``, their features (a float
    matrix, a column per ``FEATURE_COLUMNS`` entry, as the booster reads it). ``triggers`` are the
    window's triggers that kept rows; ``truths`` is what made them, each trigger of the window with
    its truth before triggers without a positive candidate were dropped. Another training set on
    the same lines whose window has the same triggers and truths has the same rows (its index,
    context and features only look before), so it shares the block rather than building it."""

    cutoff: pd.Timestamp
    keys: pd.DataFrame
    values: np.ndarray
    triggers: pd.DataFrame
    truths: frozenset[tuple[str, tuple[str, ...]]]

    @property
    def groups(self) -> np.ndarray:
        """Rows per trigger, in row order (LightGBM's ``group``); a trigger's rows are contiguous."""
        codes, _ = pd.factorize(self.keys["trigger_id"])
        if len(codes) and (np.diff(codes) < 0).any():
            raise ValueError("rows of a trigger must be contiguous")
        return np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)

    def frame(self, limit: int | None = None) -> pd.DataFrame:
        """The rows (the first ``limit``) as one frame: the keys but the label, ``FEATURE_COLUMNS``,
        then label."""
        keys = self.keys.iloc[:limit]
        features = pd.DataFrame(self.values[: len(keys)], columns=list(FEATURE_COLUMNS), index=keys.index)
        return pd.concat([keys.drop(columns="label"), features, keys[["label"]]], axis=1)


@dataclass(frozen=True)
class TrainingSummary:
    """The counts of a training set that reports and run parameters show."""

    rows: int
    triggers: int
    windows: int
    positives: int


@dataclass
class TrainingSet:
    """Labelled ranker rows as one block per training window, in time order (what a refit on the
    same lines may share), and the triggers that kept rows."""

    blocks: list[WindowBlock]
    windows: int
    released: TrainingSummary | None = None

    @classmethod
    def from_frame(cls, rows: pd.DataFrame, triggers: pd.DataFrame, windows: int) -> TrainingSet:
        """A set from rows as one frame (trigger_id, ``FEATURE_COLUMNS``, label, sorted by window
        and trigger) and their triggers (trigger_id, window_cutoff; truths are not known)."""
        window = rows["trigger_id"].map(triggers.set_index("trigger_id")["window_cutoff"])
        if (window.diff().dropna() < pd.Timedelta(0)).any():
            raise ValueError("training rows must be sorted by window")
        blocks = []
        for at, part in rows.groupby(window.to_numpy(), sort=True):
            keys = part.drop(columns=list(FEATURE_COLUMNS)).reset_index(drop=True)
            kept = triggers[triggers["trigger_id"].isin(set(keys["trigger_id"]))].reset_index(drop=True)
            values = part[list(FEATURE_COLUMNS)].to_numpy(dtype=float)
            blocks.append(WindowBlock(pd.Timestamp(at), keys, values, kept, frozenset()))
        return cls(blocks=blocks, windows=windows)

    @property
    def triggers(self) -> pd.DataFrame:
        """The triggers of every block, in row order."""
        frames = [block.triggers for block in self.blocks]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trigger_id", "window_cutoff"])

    @property
    def row_count(self) -> int:
        """Rows over every block."""
        return sum(len(block.keys) for block in self.blocks)

    def frame(self) -> pd.DataFrame:
        """Every row as one frame (``WindowBlock.frame``): for inspection and small sets, as it
        copies the features."""
        frames = [block.frame() for block in self.blocks]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trigger_id", "label"])

    def head(self, rows: int = 5) -> pd.DataFrame:
        """The first ``rows`` rows as a frame (an input example)."""
        block = next((b for b in self.blocks if len(b.keys)), None)
        return block.frame(rows) if block is not None else self.frame()

    def summary(self) -> TrainingSummary:
        """Rows, triggers, windows and positive rows (as they were before ``release_rows``)."""
        if self.released is not None:
            return self.released
        positives = sum(int(block.keys["label"].sum()) for block in self.blocks)
        triggers = sum(len(block.triggers) for block in self.blocks)
        return TrainingSummary(self.row_count, triggers, self.windows, positives)

    def release_rows(self) -> None:
        """Drop the blocks, keeping their ``summary``: once a refit has taken over what it shares,
        the held-out rows need not stay in memory beside the refit's."""
        self.released = self.summary()
        self.blocks = []

    def reusable(self, window_cutoff: pd.Timestamp, triggers: pd.DataFrame) -> WindowBlock | None:
        """This set's block of the window at ``window_cutoff`` when ``triggers`` (that window's,
        before dropping) are its triggers with the same truths, with the caller's rows of the triggers
        it kept; else None."""
        block = next((b for b in self.blocks if b.cutoff == window_cutoff), None)
        if block is None or block.truths != _truths(triggers):
            return None
        kept = triggers[triggers["trigger_id"].isin(set(block.triggers["trigger_id"]))].reset_index(drop=True)
        return replace(block, triggers=kept)  # the same rows, with the caller's trigger columns


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
    truths share their block, so only the other windows are built."""
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
    built = _window_blocks(settings, lines[lines["ordered_at"] < cutoff], new, index_config, config)
    if len(new) < len(by_window):
        log.info("training windows reused", extra={"reused": len(by_window) - len(new), "windows": len(by_window)})
    blocks = [known if (known := kept.get(at)) is not None else built[at] for at in by_window]
    return TrainingSet(blocks=blocks, windows=windows)


def _window_blocks(
    settings: Settings,
    lines: pd.DataFrame,
    windows: dict[pd.Timestamp, pd.DataFrame],
    index_config: IndexConfig | None,
    config: DatasetConfig,
) -> dict[pd.Timestamp, WindowBlock]:
    """The block of each window of ``windows`` (its triggers by window_cutoff), built one window
    at a time so that only one window's candidates are in memory. The features come from two
    point-in-time look-ups for all windows: the customers at each trigger, every product known
    before each window at its start."""
    if not windows:
        return {}
    triggers = pd.concat(list(windows.values()), ignore_index=True)
    customers = fetch_customer_features(settings, triggers)
    known = [(at, lines.loc[lines["ordered_at"] < at, "product_id"].unique()) for at in windows]
    product_keys = pd.DataFrame(
        {
            "window_cutoff": pd.DatetimeIndex([at for at, _ in known]).repeat([len(p) for _, p in known]),
            "product_id": np.concatenate([p for _, p in known]),
        }
    )
    products = product_features_at(settings, product_keys)
    blocks: dict[pd.Timestamp, WindowBlock] = {}
    for at, candidates in candidates_per_window(lines, triggers, index_config, config.candidate_config()):
        group = windows[at]
        candidates = _label(candidates, group)
        positives = candidates.groupby("trigger_id")["label"].transform("max") > 0
        candidates = candidates[positives.to_numpy()].reset_index(drop=True)
        kept = group[group["trigger_id"].isin(set(candidates["trigger_id"]))].reset_index(drop=True)
        matrix = feature_matrix(candidates, kept, customers.reindex(kept["trigger_id"].to_numpy()), products)
        keys = pd.DataFrame(matrix.labels).assign(label=candidates["label"].to_numpy())
        blocks[at] = WindowBlock(at, keys, matrix.values, kept, _truths(group))
    return blocks


def candidates_per_window(
    lines: pd.DataFrame,
    triggers: pd.DataFrame,
    index_config: IndexConfig | None,
    config: CandidateConfig,
) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
    """Candidates with context for training triggers without leakage, per ``window_cutoff`` in time
    order: one index per window, built from the lines before it, serves the triggers of that
    window (yielded one window at a time)."""
    for window_cutoff, group in triggers.groupby("window_cutoff", sort=True):
        at = pd.Timestamp(window_cutoff)
        index = CandidateIndex.build(lines, at, index_config)
        yield at, candidates_with_context(CandidateGenerator(index, config), group)


def _truths(triggers: pd.DataFrame) -> frozenset[tuple[str, tuple[str, ...]]]:
    """Each trigger with its truth: what a window's rows depend on besides the lines before it."""
    return frozenset(zip(triggers["trigger_id"], triggers["truth"], strict=True))


def _label(candidates: pd.DataFrame, triggers: pd.DataFrame) -> pd.DataFrame:
    truth = triggers[["trigger_id", "truth"]].explode("truth").dropna()
    positive = pd.MultiIndex.from_arrays([truth["trigger_id"], truth["truth"]])
    pairs = pd.MultiIndex.from_arrays([candidates["trigger_id"], candidates["product_id"]])
    return candidates.assign(label=pairs.isin(positive).astype(int)).reset_index(drop=True)
