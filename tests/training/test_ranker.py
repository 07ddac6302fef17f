"""The ranker's fit: the same boosters as LightGBM's own fit on the training rows as a frame."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_COLUMNS
from training.dataset import TrainingSet
from training.ranker import RankerConfig, _model_params, train_ranker


def training_set(windows: int = 3, triggers_per_window: int = 40, candidates: int = 12) -> TrainingSet:
    """Random feature rows whose label depends on two features, sorted by window and trigger."""
    generator = np.random.default_rng(7)
    cutoffs = pd.date_range("2025-01-01", periods=windows, freq="30D")
    trigger_ids = [f"w{w}-t{t}" for w in range(windows) for t in range(triggers_per_window)]
    rows = pd.DataFrame(
        generator.normal(size=(len(trigger_ids) * candidates, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS)
    )
    rows.insert(0, "trigger_id", np.repeat(trigger_ids, candidates))
    signal = rows[FEATURE_COLUMNS[0]] + 0.5 * rows[FEATURE_COLUMNS[1]] + generator.normal(scale=0.5, size=len(rows))
    rows["label"] = (signal > 1.2).astype(int)
    triggers = pd.DataFrame({"trigger_id": trigger_ids, "window_cutoff": np.repeat(cutoffs, triggers_per_window)})
    return TrainingSet.from_frame(rows, triggers, windows)


def reference_fit(
    rows: pd.DataFrame, config: RankerConfig, trees: int, valid: pd.DataFrame | None = None
) -> lgb.LGBMRanker:
    """LightGBM's fit on the frames, as the documentation shows it."""

    def groups(frame: pd.DataFrame) -> np.ndarray:
        return frame.groupby("trigger_id", sort=False).size().to_numpy()

    model = lgb.LGBMRanker(**_model_params(config, trees))
    extra: dict[str, object] = {}
    if valid is not None:
        extra = {
            "eval_X": (valid[list(FEATURE_COLUMNS)],),
            "eval_y": (valid["label"],),
            "eval_group": [groups(valid)],
            "eval_at": [config.eval_at],
            "callbacks": [lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        }
    model.fit(rows[list(FEATURE_COLUMNS)], rows["label"], group=groups(rows), **extra)
    return model


def predictions(booster: object, rows: pd.DataFrame) -> np.ndarray:
    return np.asarray(booster.predict(rows[list(FEATURE_COLUMNS)].to_numpy()))  # type: ignore[attr-defined]


@pytest.mark.parametrize("refit", [False, True])
def test_early_stopping_on_the_latest_window_matches_lightgbms_own_fit(refit: bool) -> None:
    training = training_set()
    config = RankerConfig(n_estimators=60, early_stopping_rounds=5, refit=refit, n_jobs=1)
    trained = train_ranker(training, config)
    rows = training.frame()

    latest = training.triggers.loc[training.triggers["window_cutoff"] == training.triggers["window_cutoff"].max()]
    is_latest = rows["trigger_id"].isin(set(latest["trigger_id"]))
    reference = reference_fit(rows[~is_latest], config, 60, valid=rows[is_latest])
    best = reference.best_iteration_
    assert 0 < best < 60
    if refit:
        trees = round(best * len(rows) / int((~is_latest).sum()))
        reference = reference_fit(rows, config, trees)
        best = trees
    assert trained.best_iteration == best
    assert trained.rows == (len(rows) if refit else int((~is_latest).sum()))  # what those trees were fit on
    assert trained.validation_ndcg > 0
    assert list(trained.booster.feature_name()) == list(FEATURE_COLUMNS)  # type: ignore[attr-defined]
    np.testing.assert_allclose(predictions(trained.booster, rows), predictions(reference.booster_, rows))


def test_a_given_number_of_trees_is_one_fit_on_every_row() -> None:
    training = training_set(windows=1)
    config = RankerConfig(n_jobs=1)
    trained = train_ranker(training, config, trees=15)
    rows = training.frame()
    reference = reference_fit(rows, config, 15)
    assert trained.best_iteration == 15 and trained.rows == len(rows)
    np.testing.assert_allclose(predictions(trained.booster, rows), predictions(reference.booster_, rows))


def test_rows_out_of_window_order_are_refused() -> None:
    training = training_set()
    shuffled = training.frame().iloc[::-1].reset_index(drop=True)
    with pytest.raises(ValueError, match="sorted by window"):
        TrainingSet.from_frame(shuffled, training.triggers, windows=3)
