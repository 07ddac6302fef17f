"""The promotion gate: move the champion alias to a registered version only if it is better.

A candidate version beats the champion when its NDCG@k is strictly higher on the same evaluation
data. When both runs were evaluated on the same data (same data sha256 and cutoff) the logged
``ndcg_at_k`` metrics are compared; otherwise both models are re-evaluated on the candidate's
evaluation data (its data file, cutoff and the feature store, which must hold that data's
features) with one candidate index built at that cutoff. ``force`` skips the gate and records why
in version tags (``promotion.forced``, ``promotion.previous_champion``, ``promotion.reason``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from models.registry import (
    CONFIG_ARTIFACT,
    alias_version,
    champion_version,
    load_heldout_booster,
    open_tracking,
    run_of_version,
    version_number,
)
from training.tracking import PRIMARY_METRIC
from xsell.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


class PromotionRefused(Exception):
    """The candidate does not beat the champion (the message says by how much)."""


def promote(settings: Settings, version: int | None = None, force: bool = False, reason: str = "") -> dict:
    """Point the champion alias at ``version`` (default: the latest) if it beats the champion, or
    unconditionally with ``force``. Returns the decision as a dict (``promoted`` True/False,
    ``message``, the two versions and the compared NDCG values)."""
    client = open_tracking(settings)
    if version is None:
        version = latest_version(client, settings)
    champion = champion_version(client, settings)
    decision: dict[str, object] = {
        "model": settings.model_name,
        "candidate_version": version,
        "champion_version": champion,
        "forced": force,
    }
    if champion == version:
        return {**decision, "promoted": False, "message": f"version {version} is already the champion"}
    if champion is not None and not force:
        decision.update(compare(settings, client, version, champion))
        if not decision["beats_champion"]:
            decision["promoted"] = False
            decision["message"] = (
                f"refused: version {version} NDCG@k {decision['candidate_ndcg']:.4f} does not beat champion "
                f"version {champion} ({decision['champion_ndcg']:.4f}) on {decision['basis']}; use force to override"
            )
            return decision
    make_champion(client, settings, version, champion, reason or ("forced" if force else "beat the champion"), force)
    decision["promoted"] = True
    decision["message"] = f"version {version} is now {settings.champion_alias} (was {champion})"
    return decision


def latest_version(client: MlflowClient, settings: Settings) -> int:
    """The newest registered version; ValueError when nothing is registered."""
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    if not versions:
        raise ValueError(f"no registered versions of {settings.model_name}: train a model first")
    return max(version_number(v.version) for v in versions)


def compare(settings: Settings, client: MlflowClient, candidate: int, champion: int) -> dict[str, object]:
    """The gate's comparison: both versions' NDCG@k on the same evaluation data (see the module
    docstring), what that data was, and whether the candidate is strictly better."""
    candidate_ndcg, champion_ndcg, basis = _compare(settings, client, candidate, champion)
    return {
        "candidate_ndcg": candidate_ndcg,
        "champion_ndcg": champion_ndcg,
        "basis": basis,
        "beats_champion": candidate_ndcg > champion_ndcg,
    }


def make_champion(
    client: MlflowClient, settings: Settings, version: int, previous: int | None, reason: str, forced: bool = False
) -> None:
    """Move the champion alias to ``version``, recording why in the version's tags; a version
    that was the challenger stops being one."""
    client.set_registered_model_alias(settings.model_name, settings.champion_alias, str(version))
    if alias_version(client, settings, settings.challenger_alias) == version:
        client.delete_registered_model_alias(settings.model_name, settings.challenger_alias)
    tags = {
        "promotion.forced": str(forced).lower(),
        "promotion.previous_champion": str(previous or ""),
        "promotion.reason": reason,
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, str(version), key, value)


def make_challenger(client: MlflowClient, settings: Settings, version: int, reason: str) -> None:
    """Point the challenger alias at ``version`` (a live trial against the champion), recording why."""
    client.set_registered_model_alias(settings.model_name, settings.challenger_alias, str(version))
    client.set_model_version_tag(settings.model_name, str(version), "challenger.reason", reason)


def _compare(settings: Settings, client: MlflowClient, candidate: int, champion: int) -> tuple[float, float, str]:
    """NDCG@k of both versions on the candidate's evaluation data, and what that data was."""
    runs = {v: run_of_version(client, settings, v) for v in (candidate, champion)}
    keys = {v: (r.data.tags.get("data.sha256"), r.data.tags.get("cutoff")) for v, r in runs.items()}
    if keys[candidate] == keys[champion] and all(PRIMARY_METRIC in r.data.metrics for r in runs.values()):
        return (
            float(runs[candidate].data.metrics[PRIMARY_METRIC]),
            float(runs[champion].data.metrics[PRIMARY_METRIC]),
            f"the same evaluation data (sha256 {str(keys[candidate][0])[:12]}, cutoff {keys[candidate][1]})",
        )
    return _reevaluate(settings, client, runs[candidate], candidate, champion)


def _reevaluate(
    settings: Settings, client: MlflowClient, run: Run, candidate: int, champion: int
) -> tuple[float, float, str]:
    """Score both versions on the candidate run's data file and cutoff."""
    import mlflow  # noqa: PLC0415  (MLflow: slow to import)

    from models.index import CandidateIndex  # noqa: PLC0415  (the comparison's stages: numba kernels and LightGBM, slow to import)
    from training.experiment import ExperimentConfig, evaluate_ranker  # noqa: PLC0415  (the comparison's stages: numba kernels and LightGBM, slow to import)
    from training.protocol import build_evaluation_triggers  # noqa: PLC0415  (the comparison's stages: numba kernels and LightGBM, slow to import)
    from xsell.history import read_purchase_history  # noqa: PLC0415  (the comparison's stages: numba kernels and LightGBM, slow to import)

    tags = run.data.tags
    data = Path(tags["data.path"])
    if not data.exists():
        raise PromotionRefused(f"cannot re-evaluate: the candidate's data file {data} is gone")
    config = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=CONFIG_ARTIFACT)).read_text()
    )
    lines = read_purchase_history(data).lines
    cutoff = pd.Timestamp(tags["cutoff"])
    experiment = ExperimentConfig.for_settings(settings)
    index = CandidateIndex.build(lines, cutoff, experiment.index)
    triggers = build_evaluation_triggers(lines, cutoff, int(config.get("horizon_days", 30))).triggers
    # the held-out boosters: a registered booster is refit on all of its data, the period scored here included
    scores = [
        evaluate_ranker(settings, load_heldout_booster(settings, v), index, triggers, experiment, baselines=False)[
            "models"
        ]["ranker"]["overall"]["ndcg"]
        for v in (candidate, champion)
    ]
    return float(scores[0]), float(scores[1]), f"re-evaluation on {data.name} (cutoff {cutoff.isoformat()})"
