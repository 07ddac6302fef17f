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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from training.evaluation import render_markdown
from training.experiment import ExperimentConfig, evaluate_ranker, run_experiment
from training.protocol import ProtocolConfig
from xsell.history import read_purchase_history
from xsell.settings import Settings

log = logging.getLogger(__name__)


@contextmanager
def _progress(description: str) -> Iterator[callable]:
    """A spinner with elapsed time; yields ``step(name)`` to report a finished step."""
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(description)

        def step(name: str) -> None:
            progress.update(task, description=f"{description}: {name} done")
            log.info("step done", extra={"step": name})

        yield step


def train(settings: Settings, data: Path, backfill: bool = True, config: ExperimentConfig | None = None) -> dict:
    """Backfill features from ``data`` (unless told not to), build the training set, train the
    ranker, evaluate it against the baselines on the held-out test period, log the run to MLflow
    and register the model (champion if it is the first version)."""
    from features.backfill import backfill as run_backfill  # noqa: PLC0415
    from training.tracking import data_fingerprint, log_training_run, open_tracking  # noqa: PLC0415

    config = config or ExperimentConfig()
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    with _progress("train") as step:
        open_tracking(settings)  # create/migrate the local store once, here, before anything else
        seconds["tracking_setup"] = round(time.perf_counter() - started, 2)
        if backfill:
            clock = time.perf_counter()
            run_backfill(settings, data)
            seconds["backfill"] = round(time.perf_counter() - clock, 2)
            step("backfill")
        clock = time.perf_counter()
        lines = read_purchase_history(data).lines
        fingerprint = data_fingerprint(data, lines)
        seconds["read"] = round(time.perf_counter() - clock, 2)
        experiment = run_experiment(settings, lines, config, step)
        seconds.update(experiment.seconds)
        clock = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            index_dir = experiment.index.save(Path(scratch) / "candidate_index")
            training = experiment.training
            registered = log_training_run(
                settings, params=_params(config, experiment), fingerprint=fingerprint, cutoff=experiment.cutoff,
                feature_columns=experiment.ranker.feature_columns, result=experiment.result,
                report=render_markdown(experiment.result), importance=experiment.ranker.importance,
                booster=experiment.ranker.booster, input_example=training.rows, index_dir=index_dir,
                ranker_config=_ranker_config(config), data_path=Path(data).resolve(),
                extra_metrics={"validation_ndcg": experiment.ranker.validation_ndcg,
                               "best_iteration": experiment.ranker.best_iteration},
            )
        seconds["log_and_register"] = round(time.perf_counter() - clock, 2)
        step("log and register")
    seconds["total"] = round(time.perf_counter() - started, 2)
    return {
        **registered, "cutoff": experiment.cutoff.isoformat(), "data": asdict(fingerprint),
        "training": {"rows": len(training.rows), "triggers": len(training.triggers), "windows": training.windows,
                     "positives": int(training.rows["label"].sum()), "best_iteration": experiment.ranker.best_iteration,
                     "validation_ndcg": experiment.ranker.validation_ndcg},
        "metrics": _headline(experiment.result), "seconds": seconds,
    }


def evaluate(
    settings: Settings, data: Path, out: Path, test_days: int = 60, horizon_days: int = 30,
    champion: bool = False, backfill: bool = True, config: ExperimentConfig | None = None,
) -> dict:
    """Evaluate on ``data``'s held-out test period: the ranker (trained on that data's training
    period by the same pipeline as ``train``, not registered; or the champion with ``champion``)
    against every baseline. Writes ``out/metrics.json`` (shape in the module docstring) and
    ``out/report.md``; returns the metrics."""
    from features.backfill import backfill as run_backfill  # noqa: PLC0415

    config = config or ExperimentConfig()
    config = replace(config, protocol=ProtocolConfig(test_days=test_days, horizon_days=horizon_days))
    with _progress("evaluate") as step:
        if backfill:
            run_backfill(settings, data)
            step("backfill")
        lines = read_purchase_history(data).lines
        if champion:
            result = _evaluate_champion(settings, lines, config)
        else:
            result = run_experiment(settings, lines, config, step).result
            result["ranker"] = "trained"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ordered = {"k": result["k"], "cutoff": result["cutoff"], "triggers": result["triggers"], "models": result["models"],
               **{key: value for key, value in result.items() if key not in ("k", "cutoff", "triggers", "models")}}
    (out / "metrics.json").write_text(json.dumps(ordered, indent=2))
    (out / "report.md").write_text(render_markdown(ordered) + f"\ncutoff {ordered['cutoff']}; ranker: {ordered['ranker']}\n")
    return ordered


def promote(settings: Settings, version: int | None = None, force: bool = False, reason: str = "") -> dict:
    """The promotion gate (see ``training.promote``)."""
    from training.promote import promote as gate  # noqa: PLC0415

    return gate(settings, version, force, reason)


def recommend(settings: Settings, data: Path, out: Path, k: int = 10) -> dict:
    """Batch offers for every order of ``data`` with the champion (see ``training.recommend``)."""
    from training.recommend import recommend_orders  # noqa: PLC0415

    with _progress("recommend"):
        return recommend_orders(settings, data, out, k)


def _evaluate_champion(settings: Settings, lines: object, config: ExperimentConfig) -> dict:
    from models.index import CandidateIndex  # noqa: PLC0415
    from training.protocol import build_evaluation_triggers, split_cutoff  # noqa: PLC0415
    from models.registry import champion_version, load_booster, open_tracking  # noqa: PLC0415

    client = open_tracking(settings)
    version = champion_version(client, settings)
    if version is None:
        raise LookupError(f"{settings.model_name} has no '{settings.champion_alias}' version: train a model first")
    cutoff = split_cutoff(lines, config.protocol.test_days)
    index = CandidateIndex.build(lines, cutoff, config.index)
    triggers = build_evaluation_triggers(lines, cutoff, config.protocol.horizon_days).triggers
    result = evaluate_ranker(settings, load_booster(settings, version), index, triggers, config)
    return {**result, "cutoff": cutoff.isoformat(), "ranker": f"champion v{version}"}


def _headline(result: dict) -> dict:
    return {model: {scope: {m: round(v, 4) if isinstance(v, float) else v for m, v in metrics.items()}
                    for scope, metrics in scopes.items()} for model, scopes in result["models"].items()}


def _ranker_config(config: ExperimentConfig) -> dict:
    return {"n_candidates": config.dataset.n_candidates, "horizon_days": config.protocol.horizon_days,
            "test_days": config.protocol.test_days, "k": config.k}


def _params(config: ExperimentConfig, experiment: object) -> dict[str, object]:
    params: dict[str, object] = {"k": config.k}
    for prefix, part in (("protocol", config.protocol), ("dataset", config.dataset), ("index", config.index),
                         ("ranker", config.ranker)):
        params.update({f"{prefix}.{key}": value for key, value in asdict(part).items()})
    params["training.windows"] = experiment.training.windows  # type: ignore[attr-defined]
    params["training.triggers"] = len(experiment.training.triggers)  # type: ignore[attr-defined]
    params["training.rows"] = len(experiment.training.rows)  # type: ignore[attr-defined]
    return params
