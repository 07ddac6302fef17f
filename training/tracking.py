"""MLflow tracking and registry: runs, artifacts, the registered ranker and its champion alias.

Nothing happens at import time (``import mlflow`` is slow): every function imports it. Opening
the store and reading the registry is ``models.registry``, which serving shares.

Logged per training run: params (every config), tags (data fingerprint: sha256, rows, date
range; cutoff; feature list), metrics (``<model>.<scope>.<metric>`` for the ranker and every
baseline, plus ``ndcg_at_k``: the ranker's overall NDCG@k, what promotion compares), artifacts
(``evaluation/report.md``, ``evaluation/metrics.json``, ``feature_importance.png``,
``candidate_index/``, ``ranker_config.json``) and the model (LightGBM booster, signature, input
example) registered as ``settings.model_name``. The first version becomes the champion.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from models.registry import (
    CONFIG_ARTIFACT,
    HELDOUT_ARTIFACT,
    INDEX_ARTIFACT,
    MODEL_ARTIFACT,
    champion_version,
    open_tracking,
    version_number,
)
from xsell.settings import Settings

PRIMARY_METRIC = "ndcg_at_k"
PIP_REQUIREMENTS_PACKAGES = ("lightgbm", "pandas", "numpy", "scikit-learn")


@dataclass(frozen=True)
class DataFingerprint:
    """Identity of a training data file: content hash, rows and date range."""

    sha256: str
    rows: int
    first_at: str
    last_at: str

    def tags(self) -> dict[str, str]:
        """As MLflow tags (``data.*``)."""
        return {f"data.{k}": str(v) for k, v in asdict(self).items()}


def data_fingerprint(path: Path, lines: pd.DataFrame) -> DataFingerprint:
    """sha256 of the file's bytes plus the order lines' count and time range."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return DataFingerprint(
        sha256=digest.hexdigest(),
        rows=len(lines),
        first_at=lines["ordered_at"].min().isoformat(),
        last_at=lines["ordered_at"].max().isoformat(),
    )


def log_training_run(
    settings: Settings,
    *,
    params: dict[str, object],
    fingerprint: DataFingerprint,
    cutoff: pd.Timestamp,
    feature_columns: tuple[str, ...],
    result: dict,
    report: str,
    importance: dict[str, float],
    booster: object,
    input_example: pd.DataFrame,
    index_dir: Path,
    ranker_config: dict,
    data_path: Path,
    extra_metrics: dict[str, float] | None = None,
    heldout_booster: object | None = None,
    served_tags: dict[str, str] | None = None,
) -> dict[str, object]:
    """Log one training run and register its model (``booster``, the one that serves, with
    ``index_dir``); the first version becomes the champion. ``heldout_booster`` (the model fit
    before the cutoff, which ``result`` scores) is kept as ``HELDOUT_ARTIFACT``, so that a later
    comparison on the held-out period scores a model that never saw it. Returns run_id,
    model_version, model_uri and whether it became champion."""
    import mlflow  # noqa: PLC0415  (MLflow: slow to import)
    import mlflow.lightgbm  # noqa: PLC0415  (MLflow: slow to import)
    from mlflow.models import infer_signature  # noqa: PLC0415  (MLflow: slow to import)

    client = open_tracking(settings)
    with mlflow.start_run() as run:
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        mlflow.set_tags(
            {
                **fingerprint.tags(),
                "cutoff": cutoff.isoformat(),
                "data.path": str(data_path),
                "features": ",".join(feature_columns),
                "feature_count": str(len(feature_columns)),
                **(served_tags or {}),
            }
        )
        metrics = flatten_metrics(result)
        metrics[PRIMARY_METRIC] = result["models"]["ranker"]["overall"]["ndcg"]
        metrics.update(extra_metrics or {})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            (folder / "report.md").write_text(report)
            (folder / "metrics.json").write_text(json.dumps(result, indent=2))
            mlflow.log_artifacts(str(folder), artifact_path="evaluation")
            plot = folder / "feature_importance.png"
            plot_importance(importance, plot)
            mlflow.log_artifact(str(plot))
            (folder / CONFIG_ARTIFACT).write_text(json.dumps(ranker_config, indent=2, default=str))
            mlflow.log_artifact(str(folder / CONFIG_ARTIFACT))
            if heldout_booster is not None:
                heldout_booster.save_model(str(folder / HELDOUT_ARTIFACT))  # type: ignore[attr-defined]
                mlflow.log_artifact(str(folder / HELDOUT_ARTIFACT))
        mlflow.log_artifacts(str(index_dir), artifact_path=INDEX_ARTIFACT)
        example = input_example[list(feature_columns)].head(5)
        signature = infer_signature(example, booster.predict(example))  # type: ignore[attr-defined]
        info = mlflow.lightgbm.log_model(
            booster,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
            registered_model_name=settings.model_name,
        )
    version = version_number(info.registered_model_version)
    became_champion = champion_version(client, settings) is None
    if became_champion:
        client.set_registered_model_alias(settings.model_name, settings.champion_alias, str(version))
        client.set_model_version_tag(settings.model_name, str(version), "promotion.reason", "first registered version")
    return {
        "run_id": run.info.run_id,
        "model_version": version,
        "model_uri": f"models:/{settings.model_name}/{version}",
        "champion": became_champion,
    }


def flatten_metrics(result: dict) -> dict[str, float]:
    """``evaluate`` results as flat MLflow metrics ``<model>.<scope>.<metric>``."""
    flat = {}
    for model, scopes in result["models"].items():
        for scope, metrics in scopes.items():
            for name, value in metrics.items():
                flat[f"{model}.{scope}.{name}"] = float(value)
    return flat


def plot_importance(importance: dict[str, float], path: Path, top: int = 30) -> Path:
    """A horizontal bar chart of the ``top`` features by gain (matplotlib, Agg backend)."""
    import matplotlib  # noqa: PLC0415  (matplotlib: slow to import; the Agg backend first)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  (matplotlib: slow to import; the Agg backend first)

    ranked = sorted(importance.items(), key=lambda kv: kv[1])[-top:]
    figure, axes = plt.subplots(figsize=(8, max(3, 0.28 * len(ranked))))
    axes.barh([name for name, _ in ranked], [value for _, value in ranked])
    axes.set_xlabel("total gain")
    axes.set_title("Ranker feature importance")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _pip_requirements() -> list[str]:

    return [f"{name}=={metadata.version(name)}" for name in PIP_REQUIREMENTS_PACKAGES]


def _param(value: object) -> object:
    text = value if isinstance(value, (int, float, bool)) else str(value)
    return text[:6000] if isinstance(text, str) else text
