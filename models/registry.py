"""The MLflow store and registry as serving and training both read them: opening the store,
the champion alias, a version's booster and candidate index.

Nothing happens at import time (``import mlflow`` is slow): every function imports it. The local
store is SQLite under XSELL_HOME; ``open_tracking`` creates (and migrates) it once, in the calling
process, and creates the experiment with its artifact root under XSELL_HOME.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from xsell.errors import UserError
from xsell.settings import Settings, environment_kept

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

MODEL_ARTIFACT = "model"
INDEX_ARTIFACT = "candidate_index"
CONFIG_ARTIFACT = "ranker_config.json"
HELDOUT_ARTIFACT = "heldout_model.txt"  # the booster fit before the run's cutoff (its figures score it)


def open_tracking(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' store, create the store and the experiment if missing;
    return a client. Call it once per process before anything else touches MLflow."""
    import mlflow  # noqa: PLC0415  (MLflow: slow to import)

    if settings.tracking_uri.startswith("sqlite:///"):
        (settings.home / "mlflow").mkdir(parents=True, exist_ok=True)
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, which Settings reads: keep the
    # environment as it was, so settings made later in this process do not inherit this store
    with environment_kept("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
    client = mlflow.MlflowClient(settings.tracking_uri, settings.tracking_uri)
    if client.get_experiment_by_name(settings.experiment_name) is None:
        location = None
        if settings.mlflow_tracking_uri is None:
            location = f"{settings.mlflow_artifacts_uri}/{settings.experiment_name}"
        client.create_experiment(settings.experiment_name, artifact_location=location)
    mlflow.set_experiment(settings.experiment_name)
    return client


def version_number(version: object) -> int:
    """A model version as int (``mv.version`` is int on SQLite, str over REST)."""
    return int(str(version))


class NoChampionError(UserError, LookupError):
    """No model version carries the champion alias."""


def require_champion(client: MlflowClient, settings: Settings) -> int:
    """The champion's version; ``NoChampionError`` (one line with the fix) when there is none."""
    version = champion_version(client, settings)
    if version is None:
        raise NoChampionError(
            f"{settings.model_name} has no '{settings.champion_alias}' version: train a model first "
            "(xsell train --data FILE)"
        )
    return version


def champion_version(client: MlflowClient, settings: Settings) -> int | None:
    """The version the champion alias points at, or None when the alias is unset."""
    return alias_version(client, settings, settings.champion_alias)


def alias_version(client: MlflowClient, settings: Settings, alias: str) -> int | None:
    """The version a registry alias (champion, challenger) points at, or None when it is unset."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415  (MLflow: slow to import)

    try:
        mv = client.get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as error:
        if error.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise
    return version_number(mv.version)


def version_run_id(mv: ModelVersion) -> str:
    """The training run a registered version was logged from (every version here is registered
    from its training run; MLflow allows a version without one, which nothing here can serve)."""
    if mv.run_id is None:
        raise LookupError(f"version {mv.version} of {mv.name} has no run")
    return mv.run_id


def run_of_version(client: MlflowClient, settings: Settings, version: int) -> Run:
    """The training run that produced a registered version."""
    mv = client.get_model_version(settings.model_name, str(version))
    return client.get_run(version_run_id(mv))


def download_index(client: object, run_id: str, destination: Path) -> Path:
    """Download a run's candidate index directory; returns its local path."""
    import mlflow  # noqa: PLC0415  (MLflow: slow to import)

    destination.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=INDEX_ARTIFACT, dst_path=str(destination))
    )


def load_booster(settings: Settings, version: int) -> object:
    """The LightGBM booster of a registered version."""
    import mlflow.lightgbm  # noqa: PLC0415  (MLflow: slow to import)

    return mlflow.lightgbm.load_model(f"models:/{settings.model_name}/{version}")


def load_heldout_booster(settings: Settings, version: int) -> object:
    """The booster that a version's held-out figures score (fit before its run's cutoff, so it
    never saw the held-out period); the registered booster for a version logged without one."""
    import lightgbm  # noqa: PLC0415  (LightGBM: slow to import)
    import mlflow  # noqa: PLC0415  (MLflow: slow to import)
    from mlflow.exceptions import MlflowException  # noqa: PLC0415  (MLflow: slow to import)

    client = open_tracking(settings)
    run = run_of_version(client, settings, version)
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=HELDOUT_ARTIFACT)
    except (MlflowException, OSError):
        return load_booster(settings, version)
    return lightgbm.Booster(model_file=path)
