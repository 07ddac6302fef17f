"""The whole offline path on the shipped sample of real data (slower): protocol, index,
candidates, baselines, evaluation."""

from __future__ import annotations

import pandas as pd
import pytest

from models.candidates import CandidateConfig, CandidateGenerator
from models.index import CandidateIndex
from training.baselines import recommend_all
from training.dataset import candidates_per_window
from training.evaluation import evaluate
from training.protocol import build_evaluation_triggers, build_training_triggers, split_cutoff
from xsell.history import read_purchase_history
from xsell.settings import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    return read_purchase_history(SAMPLE).lines


def test_sample_end_to_end(lines: pd.DataFrame) -> None:
    cutoff = split_cutoff(lines, 60)
    evaluation = build_evaluation_triggers(lines, cutoff, 30)
    triggers = evaluation.triggers
    assert len(triggers) > 20 and evaluation.dropped_empty_truth > 0

    purchases = lines[~lines["is_return"] & lines["customer_id"].notna()]
    first = purchases.groupby(["customer_id", "product_id"])["ordered_at"].min()
    truth = triggers[["customer_id", "at", "truth"]].explode("truth")
    first_at = first.reindex(pd.MultiIndex.from_arrays([truth["customer_id"], truth["truth"]])).to_numpy()
    assert (first_at > truth["at"].to_numpy()).all()  # truth was never bought before the trigger

    index = CandidateIndex.build(lines, cutoff)
    candidates = CandidateGenerator(index).candidates_for_triggers(triggers)
    merged = candidates.merge(triggers[["trigger_id", "basket", "history"]], on="trigger_id")
    owned = [
        p in b or p in h for p, b, h in zip(merged["product_id"], merged["basket"], merged["history"], strict=True)
    ]
    assert not any(owned)
    assert candidates.groupby("trigger_id").size().max() <= 200

    result = evaluate(recommend_all(index, triggers, 10), triggers, index, 10)
    assert result["triggers"] == len(triggers)
    for scopes in result["models"].values():
        assert 0.0 <= scopes["overall"]["ndcg"] <= 1.0
    assert result["models"]["popularity"]["overall"]["hit_rate"] > 0


def test_sample_training_triggers_stay_before_the_cutoff(lines: pd.DataFrame) -> None:
    cutoff = split_cutoff(lines, 60)
    training = build_training_triggers(lines, cutoff, 30, 3).triggers
    assert len(training) > 0 and (training["at"] < cutoff).all()
    purchases = lines[~lines["is_return"] & lines["customer_id"].notna()]
    bought = purchases.groupby(["customer_id", "product_id"])["ordered_at"].min()
    truth = training[["customer_id", "truth"]].explode("truth")
    first_at = bought.reindex(pd.MultiIndex.from_arrays([truth["customer_id"], truth["truth"]])).to_numpy()
    assert (first_at < cutoff).all()
    candidates = pd.concat(
        found for _, found in candidates_per_window(lines, training.head(50), None, CandidateConfig())
    )
    assert set(candidates["trigger_id"]) <= set(training["trigger_id"])
