"""One experiment on a purchase history: split, training set, ranker, evaluation against the
baselines on the held-out test period (the protocol of ``training.protocol``).

``run_experiment`` is what ``train`` and ``evaluate`` share: its figures describe the method (a
model and index fit before the cutoff, scored on the period after it). ``fit_production`` is what
``train`` then registers and the offer service serves: the same pipeline refit on every order, its
training windows and candidate index ending at the newest order. ``evaluate_ranker`` scores any
booster on evaluation triggers, so a held-out model can be re-evaluated on other data (promotion).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd

from models.candidates import CandidateGenerator
from models.features import candidates_with_context, feature_rows_from_store
from models.index import CandidateIndex, IndexConfig
from models.ranking import score_rows, top_k
from training.baselines import recommend_all
from training.dataset import DatasetConfig, TrainingSet, build_training_set
from training.evaluation import evaluate
from training.protocol import ProtocolConfig, TriggerSet, build_evaluation_triggers, split_cutoff
from training.ranker import RankerConfig, TrainedRanker, train_ranker
from xsell.settings import Settings

log = logging.getLogger(__name__)
RANKER = "ranker"


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that shapes an experiment."""

    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    k: int = 10

    @classmethod
    def for_settings(cls, settings: Settings, k: int = 10) -> ExperimentConfig:
        """The defaults, with the configured up-sell price band (``XSELL_UPSELL_*``) in the candidate
        index as well as in the offer rules."""
        return cls(index=IndexConfig.with_price_band(settings.price_band), k=k)


@dataclass
class Experiment:
    """What an experiment produced: the model, the index at the cutoff, the evaluation."""

    cutoff: pd.Timestamp
    training: TrainingSet
    ranker: TrainedRanker
    index: CandidateIndex
    evaluation_triggers: TriggerSet
    result: dict
    seconds: dict[str, float]


@dataclass
class ProductionFit:
    """The model that is registered and served: trained on windows up to the newest order, with the
    candidate index as of just after it."""

    as_of: pd.Timestamp
    training: TrainingSet
    ranker: TrainedRanker
    index: CandidateIndex
    seconds: dict[str, float]


def fit_production(
    settings: Settings,
    lines: pd.DataFrame,
    config: ExperimentConfig | None = None,
    step: Callable[[str], None] | None = None,
    heldout: Experiment | None = None,
) -> ProductionFit:
    """Refit the experiment's pipeline on all of ``lines``: training triggers and labels up to the
    newest order, the candidate index just after it (``as_of`` = newest order + 1 µs, so every line
    counts). Given the ``heldout`` experiment on the same lines, the refit reuses its work: the
    rows of training windows whose labels both fits see whole, and its early stopping's number of
    trees, scaled from the rows that early stopping fit on to all rows (``TrainedRanker.trees_for``);
    the held-out training rows are released once taken over (their counts stay:
    ``TrainingSet.summary``)."""
    config = config or ExperimentConfig.for_settings(settings)
    lap, seconds = _stopwatch(step, prefix="refit_")
    newest = lines["ordered_at"].max()
    as_of = newest + pd.Timedelta(microseconds=1)
    # windows step back from the newest order, test_days after the held-out cutoff: a multiple of
    # the window length apart, so most windows are the held-out's own
    reuse = heldout.training if heldout is not None else None
    training = build_training_set(settings, lines, newest, _dataset_config(config), config.index, reuse)
    lap("training_set")
    trees = None
    if heldout is not None:
        heldout.training.release_rows()
        if heldout.ranker.rows:
            trees = heldout.ranker.trees_for(training.row_count)
    ranker = train_ranker(training, config.ranker, trees)
    lap("train")
    index = CandidateIndex.build(lines, as_of, config.index)
    lap("index")
    return ProductionFit(as_of=as_of, training=training, ranker=ranker, index=index, seconds=seconds)


def _stopwatch(step: Callable[[str], None] | None, prefix: str = "") -> tuple[Callable[[str], None], dict[str, float]]:
    """``lap(name)`` records the seconds since the previous lap under ``prefix + name`` and reports
    the step; returns it with the dict it fills."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[prefix + name] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()
        if step is not None:
            step(prefix + name)

    return lap, seconds


def run_experiment(
    settings: Settings,
    lines: pd.DataFrame,
    config: ExperimentConfig | None = None,
    step: Callable[[str], None] | None = None,
) -> Experiment:
    """Train on the training period, evaluate the ranker and every baseline on the test period.
    The feature store must hold features of ``lines`` (see ``features.backfill``)."""
    config = config or ExperimentConfig.for_settings(settings)
    lap, seconds = _stopwatch(step)
    cutoff = split_cutoff(lines, config.protocol.test_days)
    training = build_training_set(settings, lines, cutoff, _dataset_config(config), config.index)
    lap("training_set")
    ranker = train_ranker(training, config.ranker)
    lap("train")
    index = CandidateIndex.build(lines, cutoff, config.index)
    evaluation = build_evaluation_triggers(lines, cutoff, config.protocol.horizon_days)
    result = evaluate_ranker(settings, ranker.booster, index, evaluation.triggers, config)
    lap("evaluate")
    result["cutoff"] = cutoff.isoformat()
    return Experiment(
        cutoff=cutoff,
        training=training,
        ranker=ranker,
        index=index,
        evaluation_triggers=evaluation,
        result=result,
        seconds=seconds,
    )


def evaluate_ranker(
    settings: Settings,
    booster: object,
    index: CandidateIndex,
    triggers: pd.DataFrame,
    config: ExperimentConfig | None = None,
    baselines: bool = True,
    name: str = RANKER,
) -> dict:
    """``training.evaluation.evaluate`` of the booster's top k (and of the baselines) on triggers."""
    config = config or ExperimentConfig.for_settings(settings)
    candidates = candidates_with_context(CandidateGenerator(index, config.dataset.candidate_config()), triggers)
    rows = feature_rows_from_store(settings, candidates, triggers)
    recommendations = top_k(rows, score_rows(booster, rows), config.k, model=name)
    if baselines:
        recommendations = pd.concat([recommendations, recommend_all(index, triggers, config.k)], ignore_index=True)
    return evaluate(recommendations, triggers, index, config.k)


def _dataset_config(config: ExperimentConfig) -> DatasetConfig:
    """The dataset settings with the protocol's horizon (one horizon for labels and truth)."""

    return replace(config.dataset, horizon_days=config.protocol.horizon_days)
