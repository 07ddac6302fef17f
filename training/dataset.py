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
# candidates with context of each training window, by its window_cutoff
WindowCandidates = dict[pd.Timestamp, pd.DataFrame]


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


@dataclass
class TrainingSet:
    """Labelled ranker rows (sorted by window, trigger, candidate rank) and their triggers, with
    the candidates of each window (before labels: what a refit on the same lines may reuse)."""

    rows: pd.DataFrame
    triggers: pd.DataFrame
    windows: int
    window_candidates: WindowCandidates = field(default_factory=dict)

    @property
    def groups(self) -> np.ndarray:
        """Rows per trigger, in row order (LightGBM's ``group``)."""
        return self.rows.groupby("trigger_id", sort=False).size().to_numpy()


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
    reuse: WindowCandidates | None = None,
) -> TrainingSet:
    """Labelled rows from training triggers strictly before ``cutoff`` (features from Feast).
    ``reuse``: the window candidates of another training set on the same lines (a window whose
    triggers are the same has the same candidates: its index and their context only look before it)."""
    config = config or DatasetConfig()
    windows = window_count(lines, cutoff, config)
    trigger_set = build_training_triggers(
        lines, cutoff, config.horizon_days, windows, config.window_days, config.orders_per_customer
    )
    triggers = trigger_set.triggers
    log.info("training triggers", extra={"triggers": len(triggers), "windows": windows})
    window_candidates = candidates_per_window(
        lines[lines["ordered_at"] < cutoff], triggers, index_config, config.candidate_config(), reuse
    )
    candidates = _label(pd.concat(list(window_candidates.values()), ignore_index=True), triggers)
    positives = candidates.groupby("trigger_id")["label"].transform("max") > 0
    candidates = candidates[positives.to_numpy()]
    triggers = triggers[triggers["trigger_id"].isin(set(candidates["trigger_id"]))].reset_index(drop=True)
    rows = feature_rows_from_store(settings, candidates, triggers)
    rows["label"] = candidates["label"].to_numpy()
    return TrainingSet(rows=rows, triggers=triggers, windows=windows, window_candidates=window_candidates)


def candidates_per_window(
    lines: pd.DataFrame,
    triggers: pd.DataFrame,
    index_config: IndexConfig | None,
    config: CandidateConfig,
    reuse: WindowCandidates | None = None,
) -> WindowCandidates:
    """Candidates with context for training triggers without leakage, per ``window_cutoff`` in time
    order: one index per window, built from the lines before it, serves the triggers of that window.
    A window found in ``reuse`` with the same trigger ids keeps its candidates."""
    found: WindowCandidates = {}
    for window_cutoff, group in triggers.groupby("window_cutoff", sort=True):
        at = pd.Timestamp(window_cutoff)
        known = reuse.get(at) if reuse else None
        if known is not None and set(known["trigger_id"]) == set(group["trigger_id"]):
            found[at] = known
            continue
        index = CandidateIndex.build(lines, at, index_config)
        found[at] = candidates_with_context(CandidateGenerator(index, config), group)
    return found


def _label(candidates: pd.DataFrame, triggers: pd.DataFrame) -> pd.DataFrame:
    truth = triggers[["trigger_id", "truth"]].explode("truth").dropna()
    positive = pd.MultiIndex.from_arrays([truth["trigger_id"], truth["truth"]])
    pairs = pd.MultiIndex.from_arrays([candidates["trigger_id"], candidates["product_id"]])
    return candidates.assign(label=pairs.isin(positive).astype(int)).reset_index(drop=True)
