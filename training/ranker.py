"""The LightGBM lambdarank ranker: training with time-based early stopping (scoring and top-k
lists are ``models.ranking``, shared with serving).

Early stopping holds out the latest training window (never a random split): the model is fit on
the earlier windows and the number of trees is chosen on the latest one. That early-stopped model
is the held-out experiment's; the model that serves (``training.experiment.fit_production``) is
one fit on every window with that number of trees scaled by the rows added. ``refit`` also refits
the held-out model on all of its windows (one more fit, for a figure of a model trained as the
served one is).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from models.features import FEATURE_COLUMNS
from models.ranking import score_rows
from training.dataset import TrainingSet, WindowBlock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankerConfig:
    """LightGBM settings: generic defaults, none tuned to one data set."""

    n_estimators: int = 1000
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 50
    subsample: float = 0.8
    subsample_freq: int = 1
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 30
    eval_at: int = 10
    n_jobs: int = 2
    refit: bool = False
    seed: int = 0

    def params(self) -> dict[str, object]:
        """Everything, as MLflow params."""
        return asdict(self)


@dataclass
class TrainedRanker:
    """A fitted booster and what early stopping found: ``best_iteration`` trees fit on ``rows``
    rows (what a fit on more rows scales its number of trees from)."""

    booster: object  # lightgbm.Booster
    best_iteration: int
    validation_ndcg: float
    rows: int = 0
    feature_columns: tuple[str, ...] = FEATURE_COLUMNS
    importance: dict[str, float] = field(default_factory=dict)

    def trees_for(self, rows: int) -> int:
        """Trees for a fit on ``rows`` rows: ``best_iteration`` scaled by the rows added."""
        return max(1, round(self.best_iteration * rows / max(self.rows, 1)))

    def score(self, rows: pd.DataFrame) -> np.ndarray:
        """Ranker scores of feature rows (higher = better)."""
        return score_rows(self.booster, rows, self.feature_columns)


def _lightgbm() -> ModuleType:
    """The lightgbm module, imported lazily: slow, and OMP must be set first."""
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # no busy-waiting threads on a small box
    import lightgbm  # noqa: PLC0415  (slow to import, and OMP must be set first)

    return lightgbm


def train_ranker(training: TrainingSet, config: RankerConfig | None = None, trees: int | None = None) -> TrainedRanker:
    """Fit a lambdarank booster; early stopping on the latest window of ``training`` that has rows,
    or, given ``trees`` (a number an earlier early stopping chose), one fit on every row with that
    many trees. LightGBM reads the windows' feature blocks as they are (no copy into one matrix)."""
    config = config or RankerConfig()
    lgb = _lightgbm()
    blocks = [block for block in training.blocks if len(block.keys)]
    if trees is not None:
        return _trained(_fit(lgb, config, blocks, trees), trees, float("nan"), training.row_count)
    has_valid = len(blocks) > 1  # a single window: no time-based hold-out possible
    fit_blocks, valid_blocks = (blocks[:-1], blocks[-1:]) if has_valid else (blocks, [])
    booster = _fit(lgb, config, fit_blocks, config.n_estimators, valid_blocks)
    best = int(booster.best_iteration or config.n_estimators)
    validation = float(booster.best_score["valid_0"][f"ndcg@{config.eval_at}"]) if has_valid else float("nan")
    log.info("ranker early stopping", extra={"best_iteration": best, "validation_ndcg": validation})
    early = _trained(booster, best, validation, sum(len(block.keys) for block in fit_blocks))
    if config.refit and has_valid:
        trees = early.trees_for(training.row_count)
        return _trained(_fit(lgb, config, blocks, trees), trees, validation, training.row_count)
    return early


def _dataset(lgb: ModuleType, blocks: list[WindowBlock], params: dict[str, object], **extra: object) -> object:
    """A LightGBM dataset of the blocks' rows (their feature matrices, labels and trigger groups)."""
    return lgb.Dataset(
        [block.values for block in blocks],
        label=np.concatenate([block.keys["label"].to_numpy() for block in blocks]),
        group=np.concatenate([block.groups for block in blocks]),
        params=params,
        **extra,
    )


def _fit(
    lgb: ModuleType, config: RankerConfig, blocks: list[WindowBlock], trees: int, valid: list[WindowBlock] | None = None
) -> Any:
    """``trees`` rounds on ``blocks`` (``lightgbm.train`` with the parameters ``LGBMRanker`` would
    pass); with ``valid`` blocks, early stopping on their NDCG@``eval_at``."""
    if not blocks:
        raise ValueError("no training rows: every training trigger lacks a positive candidate")
    params = {**_model_params(config, trees), "metric": ["ndcg"], "eval_at": [config.eval_at]}
    params.pop("n_estimators")
    train_set = _dataset(lgb, blocks, params, feature_name=list(FEATURE_COLUMNS))
    options: dict[str, object] = {}
    if valid:
        options = {
            "valid_sets": [_dataset(lgb, valid, params, reference=train_set)],
            "callbacks": [lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        }
    booster = lgb.train(params, train_set, num_boost_round=trees, **options)
    booster.free_dataset()
    return booster


def _trained(booster: Any, trees: int, validation: float, rows: int) -> TrainedRanker:
    gains = booster.feature_importance(importance_type="gain")
    importance = {name: float(g) for name, g in zip(FEATURE_COLUMNS, gains, strict=True)}
    return TrainedRanker(booster, trees, validation, rows, importance=importance)


def _model_params(config: RankerConfig, trees: int) -> dict[str, object]:
    return {
        "objective": "lambdarank",
        "n_estimators": trees,
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "subsample": config.subsample,
        "subsample_freq": config.subsample_freq,
        "colsample_bytree": config.colsample_bytree,
        "reg_lambda": config.reg_lambda,
        "n_jobs": config.n_jobs,
        "random_state": config.seed,
        "verbose": -1,
    }
