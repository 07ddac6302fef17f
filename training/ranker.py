"""The LightGBM lambdarank ranker: training with time-based early stopping (scoring and top-k
lists are ``models.ranking``, shared with serving).

Early stopping holds out the latest training window (never a random split): the model is fit on
the earlier windows, the number of trees is chosen on the latest one, then (``refit``) the model is
refit on every window with that number of trees scaled by the share of data added.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from types import ModuleType

import numpy as np
import pandas as pd

from models.features import FEATURE_COLUMNS
from models.ranking import score_rows
from training.dataset import TrainingSet

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
    refit: bool = True
    seed: int = 0

    def params(self) -> dict[str, object]:
        """Everything, as MLflow params."""
        return asdict(self)


@dataclass
class TrainedRanker:
    """A fitted booster and what early stopping found."""

    booster: object  # lightgbm.Booster
    best_iteration: int
    validation_ndcg: float
    feature_columns: tuple[str, ...] = FEATURE_COLUMNS
    importance: dict[str, float] = field(default_factory=dict)

    def score(self, rows: pd.DataFrame) -> np.ndarray:
        """Ranker scores of feature rows (higher = better)."""
        return score_rows(self.booster, rows, self.feature_columns)


def _lightgbm() -> ModuleType:
    """The lightgbm module, imported lazily: slow, and OMP must be set first."""
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # no busy-waiting threads on a small box
    import lightgbm  # noqa: PLC0415  (slow to import, and OMP must be set first)

    return lightgbm


def train_ranker(training: TrainingSet, config: RankerConfig | None = None, trees: int | None = None) -> TrainedRanker:
    """Fit an LGBMRanker; early stopping on the latest window of ``training``, or, given ``trees``
    (a number an earlier early stopping chose), one fit on every row with that many trees."""
    config = config or RankerConfig()
    lgb = _lightgbm()
    rows = training.rows
    # one float matrix of the features, sliced into views: the rows are sorted by window, so the
    # latest window (the early-stopping hold-out) is their tail
    values = _feature_matrix(rows)
    labels = rows["label"].to_numpy()
    groups = _groups(rows)
    fit_kwargs: dict[str, object] = {"feature_name": list(FEATURE_COLUMNS)}
    if trees is not None:
        model = lgb.LGBMRanker(**_model_params(config, trees))
        model.fit(values, labels, group=groups, **fit_kwargs)
        return _trained(model, trees, float("nan"))
    windows = rows["trigger_id"].map(training.triggers.set_index("trigger_id")["window_cutoff"]).to_numpy()
    n_fit = int((windows < windows.max()).sum()) if len(windows) else 0
    if n_fit and (windows[:n_fit] == windows.max()).any():
        raise ValueError("training rows must be sorted by window")
    split = int(np.searchsorted(np.cumsum(groups), n_fit, side="right"))
    has_valid = 0 < n_fit < len(rows)
    if not has_valid:  # a single window: no time-based hold-out possible
        n_fit, split = len(rows), len(groups)
    model = lgb.LGBMRanker(**_model_params(config, config.n_estimators))
    if has_valid:
        fit_kwargs |= {
            "eval_X": (values[n_fit:],),
            "eval_y": (labels[n_fit:],),
            "eval_group": [groups[split:]],
            "eval_at": [config.eval_at],
            "callbacks": [lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        }
    model.fit(values[:n_fit], labels[:n_fit], group=groups[:split], **fit_kwargs)
    best = int(model.best_iteration_ or config.n_estimators)
    validation = float(model.best_score_["valid_0"][f"ndcg@{config.eval_at}"]) if has_valid else float("nan")
    log.info("ranker early stopping", extra={"best_iteration": best, "validation_ndcg": validation})
    if config.refit and has_valid:
        trees = max(1, round(best * len(rows) / max(n_fit, 1)))
        model = lgb.LGBMRanker(**_model_params(config, trees))
        model.fit(values, labels, group=groups, feature_name=list(FEATURE_COLUMNS))
        best = trees
    return _trained(model, best, validation)


def _feature_matrix(rows: pd.DataFrame) -> np.ndarray:
    """The feature columns as one matrix, in the dtype LightGBM would convert a DataFrame of them to."""
    values = np.empty((len(rows), len(FEATURE_COLUMNS)), dtype=np.result_type(*rows.dtypes[list(FEATURE_COLUMNS)]))
    for at, name in enumerate(FEATURE_COLUMNS):  # column by column: no intermediate frame
        values[:, at] = rows[name].to_numpy()
    return values


def _trained(model: object, trees: int, validation: float) -> TrainedRanker:
    booster = model.booster_  # type: ignore[attr-defined]
    gains = booster.feature_importance(importance_type="gain")
    importance = {name: float(g) for name, g in zip(FEATURE_COLUMNS, gains, strict=True)}
    return TrainedRanker(booster=booster, best_iteration=trees, validation_ndcg=validation, importance=importance)


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


def _groups(rows: pd.DataFrame) -> np.ndarray:
    """Rows per trigger in row order; rows of a trigger must be contiguous."""
    codes, _ = pd.factorize(rows["trigger_id"])
    if len(codes) and (np.diff(codes) < 0).any():
        raise ValueError("rows of a trigger must be contiguous")
    return np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
