"""The LightGBM lambdarank ranker: training with time-based early stopping, scoring, top-k lists.

Early stopping holds out the latest training window (never a random split): the model is fit on
the earlier windows, the number of trees is chosen on the latest one, then (``refit``) the model is
refit on every window with that number of trees scaled by the share of data added.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from training.dataset import FEATURE_COLUMNS, TrainingSet

log = logging.getLogger(__name__)
RECOMMENDATION_COLUMNS = ("model", "trigger_id", "product_id", "rank", "offer_type", "reason", "score")


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


def _lightgbm():  # noqa: ANN202  (the lightgbm module; imported lazily: slow, and OMP must be set first)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # no busy-waiting threads on a small box
    import lightgbm  # noqa: PLC0415

    return lightgbm


def train_ranker(training: TrainingSet, config: RankerConfig | None = None) -> TrainedRanker:
    """Fit an LGBMRanker; early stopping on the latest window of ``training``."""
    config = config or RankerConfig()
    lgb = _lightgbm()
    rows = training.rows
    windows = rows["trigger_id"].map(training.triggers.set_index("trigger_id")["window_cutoff"])
    latest = windows.max()
    fit_mask = (windows < latest).to_numpy()
    if not fit_mask.any() or fit_mask.all():  # a single window: no time-based hold-out possible
        fit_mask = np.ones(len(rows), dtype=bool)
    model = lgb.LGBMRanker(**_model_params(config, config.n_estimators))
    fit_rows, valid_rows = rows[fit_mask], rows[~fit_mask]
    fit_kwargs: dict[str, object] = {}
    if len(valid_rows):
        fit_kwargs = {
            "eval_X": (valid_rows[list(FEATURE_COLUMNS)],), "eval_y": (valid_rows["label"],),
            "eval_group": [_groups(valid_rows)], "eval_at": [config.eval_at],
            "callbacks": [lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        }
    model.fit(fit_rows[list(FEATURE_COLUMNS)], fit_rows["label"], group=_groups(fit_rows), **fit_kwargs)
    best = int(model.best_iteration_ or config.n_estimators)
    validation = float(model.best_score_["valid_0"][f"ndcg@{config.eval_at}"]) if len(valid_rows) else float("nan")
    log.info("ranker early stopping", extra={"best_iteration": best, "validation_ndcg": validation})
    if config.refit and len(valid_rows):
        trees = max(1, round(best * len(rows) / max(len(fit_rows), 1)))
        model = lgb.LGBMRanker(**_model_params(config, trees))
        model.fit(rows[list(FEATURE_COLUMNS)], rows["label"], group=_groups(rows))
        best = trees
    booster = model.booster_
    gains = booster.feature_importance(importance_type="gain")
    importance = {name: float(g) for name, g in zip(FEATURE_COLUMNS, gains, strict=True)}
    return TrainedRanker(booster=booster, best_iteration=best, validation_ndcg=validation, importance=importance)


def score_rows(
    booster: object, rows: pd.DataFrame, feature_columns: tuple[str, ...] = FEATURE_COLUMNS, threads: int = 0,
) -> np.ndarray:
    """Scores of feature rows by a LightGBM booster (or anything with ``predict``); ``threads`` 0
    leaves LightGBM's default (all cores)."""
    if rows.empty:
        return np.zeros(0)
    # a float matrix: LightGBM's DataFrame checks cost more than predict
    return score_matrix(booster, rows[list(feature_columns)].to_numpy(dtype=np.float64), threads)


def score_matrix(booster: object, values: np.ndarray, threads: int = 0) -> np.ndarray:
    """``score_rows`` of a float matrix whose columns are the booster's features, in order."""
    if len(values) == 0:
        return np.zeros(0)
    options = {"num_threads": threads} if threads > 0 else {}
    return np.asarray(booster.predict(values, **options), dtype=float)  # type: ignore[attr-defined]


def best_rows(trigger_ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the k best-scored rows of each trigger and their 1-based ranks: triggers in
    sorted order, best first within a trigger, equal scores in row order. In numpy: a pandas
    sort and group-by cost more than the scoring itself on a small serving batch."""
    trigger_code = pd.factorize(trigger_ids, sort=True)[0]
    order = np.lexsort((-np.asarray(scores, dtype=float), trigger_code))
    ordered = trigger_code[order]
    rank = np.arange(len(order)) - np.searchsorted(ordered, ordered, side="left") + 1
    keep = rank <= k
    return order[keep], rank[keep]


def top_k(rows: pd.DataFrame, scores: np.ndarray, k: int = 10, model: str = "ranker") -> pd.DataFrame:
    """The k best-scored rows per trigger as a recommendation table (``RECOMMENDATION_COLUMNS``)."""
    best, rank = best_rows(rows["trigger_id"].to_numpy(), scores, k)
    ranked = rows.iloc[best][["trigger_id", "product_id", "offer_type", "reason"]]
    ranked = ranked.assign(score=np.asarray(scores, dtype=float)[best], rank=rank, model=model)
    return ranked[list(RECOMMENDATION_COLUMNS)].reset_index(drop=True)


def _model_params(config: RankerConfig, trees: int) -> dict[str, object]:
    return {
        "objective": "lambdarank", "n_estimators": trees, "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves, "min_child_samples": config.min_child_samples,
        "subsample": config.subsample, "subsample_freq": config.subsample_freq,
        "colsample_bytree": config.colsample_bytree, "reg_lambda": config.reg_lambda,
        "n_jobs": config.n_jobs, "random_state": config.seed, "verbose": -1,
    }


def _groups(rows: pd.DataFrame) -> np.ndarray:
    """Rows per trigger in row order; rows of a trigger must be contiguous."""
    codes, _ = pd.factorize(rows["trigger_id"])
    if len(codes) and (np.diff(codes) < 0).any():
        raise ValueError("rows of a trigger must be contiguous")
    return np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
