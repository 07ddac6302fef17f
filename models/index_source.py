"""Which MLflow run's candidate index a registered version serves, and as of when.

A version serves the index of the run named by its model-version tag ``candidate_index.run_id``
(set by ``xsell index refresh``, which logs a fresher index in a run of its own), else the index
logged with the version's training run. Serving, the refresh and the dashboard read it here.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from models.registry import INDEX_ARTIFACT, champion_version, open_tracking, version_run_id
from xsell.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

INDEX_RUN_TAG = "candidate_index.run_id"
AS_OF_TAGS = ("index.as_of", "served.index_as_of")  # refresh runs, training runs


def index_run_id(model_version: ModelVersion) -> str:
    """The run whose ``candidate_index`` artifact a model version serves."""
    return (model_version.tags or {}).get(INDEX_RUN_TAG) or version_run_id(model_version)


def index_as_of(client: MlflowClient, run_id: str) -> pd.Timestamp:
    """The ``as_of`` of a run's candidate index: from its run tag, else from the index manifest."""
    import mlflow  # noqa: PLC0415  (MLflow: slow to import)

    tags = client.get_run(run_id).data.tags
    for name in AS_OF_TAGS:
        if tags.get(name):
            return pd.Timestamp(tags[name])
    with tempfile.TemporaryDirectory() as scratch:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{INDEX_ARTIFACT}/manifest.json", dst_path=scratch
        )
        return pd.Timestamp(json.loads(Path(path).read_text())["as_of"])


def serving_index(settings: Settings) -> dict[str, object] | None:
    """The champion's version and when it was registered, the run of the index it serves and that
    index's as_of (times ISO), as the registry says; None when no champion is registered (a local
    store not created yet included)."""

    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None  # nothing was ever registered here; do not create a store just to read it
    client = open_tracking(settings)
    version = champion_version(client, settings)
    if version is None:
        return None
    registered = client.get_model_version(settings.model_name, str(version))
    run_id = index_run_id(registered)
    return {
        "model_version": version,
        "model_registered_at": datetime.fromtimestamp(registered.creation_timestamp / 1000, UTC).isoformat(),
        "index_run_id": run_id,
        "index_as_of": index_as_of(client, run_id).isoformat(),
    }
