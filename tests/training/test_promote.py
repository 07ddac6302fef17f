"""The promotion gate on a real MLflow SQLite store: the first version is champion, a worse one is
refused, a better one is promoted, force overrides and is recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_COLUMNS
from models.index import CandidateIndex
from models.registry import champion_version, open_tracking
from tests.models.retail import START, store_history
from training.promote import promote
from training.ranker import _lightgbm
from training.tracking import DataFingerprint, log_training_run
from xsell.settings import load_settings


def register(settings: object, tmp_path: Path, ndcg: float) -> int:
    """Log and register a small real LightGBM model whose evaluation reports ``ndcg``."""
    rng = np.random.default_rng(int(ndcg * 1000))
    rows = pd.DataFrame(rng.random((60, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    model = _lightgbm().LGBMRanker(n_estimators=3, min_child_samples=2, verbose=-1)
    model.fit(rows, rng.integers(0, 2, 60), group=[10] * 6)
    index_dir = CandidateIndex.build(store_history(), START + pd.Timedelta(days=30)).save(tmp_path / f"index{ndcg}")
    scope = {"ndcg": ndcg, "hit_rate": 0.3, "recall": 0.1, "mrr": 0.1, "coverage": 0.1, "triggers": 5}
    result = {"k": 10, "triggers": 5, "models": {"ranker": {"overall": scope, "cross_sell": scope, "up_sell": scope}}}
    fingerprint = DataFingerprint(sha256="abc", rows=100, first_at="2011-01-01", last_at="2011-02-01")
    logged = log_training_run(
        settings,
        params={"k": 10},
        fingerprint=fingerprint,
        cutoff=pd.Timestamp("2011-01-20", tz="UTC"),
        feature_columns=FEATURE_COLUMNS,
        result=result,
        report="# report",
        importance={"co_count": 1.0},
        booster=model.booster_,
        input_example=rows,
        index_dir=index_dir,
        ranker_config={"n_candidates": 20},
        data_path=tmp_path / "data.parquet",
    )
    return int(logged["model_version"])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, int]]:
    tmp_path = tmp_path_factory.mktemp("mlflow")
    settings = load_settings(home=tmp_path)
    open_tracking(settings)
    versions = {
        name: register(settings, tmp_path, ndcg) for name, ndcg in (("first", 0.10), ("worse", 0.08), ("better", 0.12))
    }
    return settings, versions


def test_first_version_is_champion_and_worse_is_refused(registry: tuple) -> None:
    settings, versions = registry
    client = open_tracking(settings)
    assert champion_version(client, settings) == versions["first"]
    decision = promote(settings, versions["worse"])
    assert decision["promoted"] is False and "does not beat" in decision["message"]
    assert decision["candidate_ndcg"] == pytest.approx(0.08) and decision["champion_ndcg"] == pytest.approx(0.10)
    assert champion_version(client, settings) == versions["first"]


def test_better_is_promoted_then_force_is_recorded(registry: tuple) -> None:
    settings, versions = registry
    client = open_tracking(settings)
    decision = promote(settings)  # the latest version: "better"
    assert decision["promoted"] is True and champion_version(client, settings) == versions["better"]
    forced = promote(settings, versions["worse"], force=True, reason="rollback drill")
    assert forced["promoted"] is True and champion_version(client, settings) == versions["worse"]
    tags = client.get_model_version(settings.model_name, str(versions["worse"])).tags
    assert tags["promotion.forced"] == "true" and tags["promotion.reason"] == "rollback drill"
    assert tags["promotion.previous_champion"] == str(versions["better"])
