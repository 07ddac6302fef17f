"""The training stage's commands, as plain functions the CLI calls: train, evaluate, promote,
recommend. Each returns a JSON-able dict; long steps show progress on stderr.

``evaluate`` writes ``OUT/metrics.json`` in this stable shape (and ``OUT/report.md``)::

    {"k": 10, "cutoff": "2011-10-10T12:50:00+00:00", "triggers": 751,
     "models": {name: {"overall": {"ndcg", "hit_rate", "recall", "mrr", "coverage", "triggers"},
                       "cross_sell": {...}, "up_sell": {...}}},
     "catalog_size": ..., "truth_items": {...}, "ranker": "trained" | "champion vN"}

where ``models`` holds ``ranker`` and every baseline of ``training.baselines``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from training.evaluation import render_markdown
from training.experiment import (
    Experiment,
    ExperimentConfig,
    ProductionFit,
    evaluate_ranker,
    fit_production,
    run_experiment,
)
from training.protocol import ProtocolConfig
from xsell.history import read_purchase_history
from xsell.settings import Settings

log = logging.getLogger(__name__)


@contextmanager
def progress(description: str) -> Iterator[Callable[[str], None]]:
    """A spinner with elapsed time; yields ``step(name)`` to report a finished step."""
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(description)

        def step(name: str) -> None:
            progress.update(task, description=f"{description}: {name} done")
            log.info("step done", extra={"step": name})

        yield step


def train(settings: Settings, data: Path, backfill: bool = True, config: ExperimentConfig | None = None) -> dict:
    """Backfill features from ``data`` (unless told not to); evaluate the method on the held-out
    test period (train before the cutoff, score after it, against the baselines); then refit it on
    all of ``data`` (training windows and candidate index up to the newest order) and register that
    refit, the model that serves (champion if it is the first version). The run logs both: the
    held-out figures and the refit's data range and index ``as_of``."""
    from features.backfill import backfill as run_backfill
    from training.tracking import data_fingerprint, log_training_run, open_tracking

    config = config or ExperimentConfig.for_settings(settings)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    with progress("train") as step:
        open_tracking(settings)  # create/migrate the local store once, here, before anything else
        seconds["tracking_setup"] = round(time.perf_counter() - started, 2)
        clock = time.perf_counter()
        history = read_purchase_history(data)  # once: backfill and training read the same lines
        lines = history.lines
        fingerprint = data_fingerprint(data, lines)
        seconds["read"] = round(time.perf_counter() - clock, 2)
        if backfill:
            clock = time.perf_counter()
            run_backfill(settings, data, history=history)
            seconds["backfill"] = round(time.perf_counter() - clock, 2)
            step("backfill")
        experiment = run_experiment(settings, lines, config, step)
        seconds.update(experiment.seconds)
        production = fit_production(settings, lines, config, step, heldout=experiment)
        seconds.update(production.seconds)
        clock = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            index_dir = production.index.save(Path(scratch) / "candidate_index")
            training = production.training
            registered = log_training_run(
                settings,
                params=_params(config, experiment, production),
                fingerprint=fingerprint,
                cutoff=experiment.cutoff,
                feature_columns=production.ranker.feature_columns,
                result=experiment.result,
                report=render_markdown(experiment.result),
                importance=production.ranker.importance,
                booster=production.ranker.booster,
                input_example=training.head(),
                index_dir=index_dir,
                ranker_config=_ranker_config(config),
                data_path=Path(data).resolve(),
                extra_metrics={
                    "validation_ndcg": experiment.ranker.validation_ndcg,
                    "best_iteration": experiment.ranker.best_iteration,
                    "refit.best_iteration": production.ranker.best_iteration,
                },
                heldout_booster=experiment.ranker.booster,
                served_tags={
                    "served.index_as_of": production.as_of.isoformat(),
                    "served.data_first_at": fingerprint.first_at,
                    "served.data_last_at": fingerprint.last_at,
                    "served.training_windows": str(training.windows),
                },
            )
        seconds["log_and_register"] = round(time.perf_counter() - clock, 2)
        step("log and register")
    seconds["total"] = round(time.perf_counter() - started, 2)
    heldout, served = experiment.training.summary(), training.summary()
    return {
        **registered,
        "cutoff": experiment.cutoff.isoformat(),
        "data": asdict(fingerprint),
        "heldout": {
            **asdict(heldout),
            "best_iteration": experiment.ranker.best_iteration,
            "validation_ndcg": experiment.ranker.validation_ndcg,
        },
        "served": {
            "index_as_of": production.as_of.isoformat(),
            "data_last_at": fingerprint.last_at,
            **asdict(served),
            "best_iteration": production.ranker.best_iteration,
        },
        "metrics": _headline(experiment.result),
        "seconds": seconds,
    }


def evaluate(
    settings: Settings,
    data: Path,
    out: Path,
    test_days: int = 60,
    horizon_days: int = 30,
    champion: bool = False,
    backfill: bool = True,
    config: ExperimentConfig | None = None,
) -> dict:
    """Evaluate on ``data``'s held-out test period: the ranker (trained on that data's training
    period by the same pipeline as ``train``, not registered; or the champion's held-out booster
    with ``champion``) against every baseline. That figure describes the method (a research
    figure; ``cli.backtest`` measures the served path). Writes ``out/metrics.json`` (shape in the
    module docstring) and ``out/report.md``; returns the metrics."""
    from features.backfill import backfill as run_backfill

    config = config or ExperimentConfig.for_settings(settings)
    config = replace(config, protocol=ProtocolConfig(test_days=test_days, horizon_days=horizon_days))
    with progress("evaluate") as step:
        history = read_purchase_history(data)
        lines = history.lines
        if backfill:
            run_backfill(settings, data, history=history)
            step("backfill")
        if champion:
            result = _evaluate_champion(settings, lines, config)
        else:
            result = run_experiment(settings, lines, config, step).result
            result["ranker"] = "trained"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ordered = {
        "k": result["k"],
        "cutoff": result["cutoff"],
        "triggers": result["triggers"],
        "models": result["models"],
        **{key: value for key, value in result.items() if key not in ("k", "cutoff", "triggers", "models")},
    }
    report = (
        "# Held-out evaluation of the method (research figure)\n\n"
        + render_markdown(ordered)
        + f"\ncutoff {ordered['cutoff']}; ranker: {ordered['ranker']}\n"
    )
    (out / "metrics.json").write_text(json.dumps(ordered, indent=2))
    (out / "report.md").write_text(report)
    return ordered


def promote(settings: Settings, version: int | None = None, force: bool = False, reason: str = "") -> dict:
    """The promotion gate (see ``training.promote``)."""
    from training.promote import promote as gate

    return gate(settings, version, force, reason)


def recommend(settings: Settings, data: Path, out: Path, k: int = 10) -> dict:
    """Batch offers for every order of ``data`` with the champion (see ``training.recommend``)."""
    from training.recommend import recommend_orders

    with progress("recommend"):
        return recommend_orders(settings, data, out, k)


def _evaluate_champion(settings: Settings, lines: object, config: ExperimentConfig) -> dict:
    from models.index import CandidateIndex
    from models.registry import load_heldout_booster, open_tracking, require_champion
    from training.protocol import build_evaluation_triggers, split_cutoff

    client = open_tracking(settings)
    version = require_champion(client, settings)
    cutoff = split_cutoff(lines, config.protocol.test_days)
    index = CandidateIndex.build(lines, cutoff, config.index)
    triggers = build_evaluation_triggers(lines, cutoff, config.protocol.horizon_days).triggers
    # the champion's held-out booster: the registered one is refit on all of its data, this period included
    result = evaluate_ranker(settings, load_heldout_booster(settings, version), index, triggers, config)
    return {**result, "cutoff": cutoff.isoformat(), "ranker": f"champion v{version} (held-out fit)"}


def _headline(result: dict) -> dict:
    return {
        model: {
            scope: {m: round(v, 4) if isinstance(v, float) else v for m, v in metrics.items()}
            for scope, metrics in scopes.items()
        }
        for model, scopes in result["models"].items()
    }


def _ranker_config(config: ExperimentConfig) -> dict:
    return {
        "n_candidates": config.dataset.n_candidates,
        "horizon_days": config.protocol.horizon_days,
        "test_days": config.protocol.test_days,
        "k": config.k,
    }


def _params(config: ExperimentConfig, experiment: Experiment, production: ProductionFit) -> dict[str, object]:
    params: dict[str, object] = {"k": config.k}
    for prefix, part in (
        ("protocol", config.protocol),
        ("dataset", config.dataset),
        ("index", config.index),
        ("ranker", config.ranker),
    ):
        params.update({f"{prefix}.{key}": value for key, value in asdict(part).items()})
    for prefix, training in (("training", experiment.training), ("refit", production.training)):
        summary = training.summary()
        params[f"{prefix}.windows"] = summary.windows
        params[f"{prefix}.triggers"] = summary.triggers
        params[f"{prefix}.rows"] = summary.rows
    return params
