"""`/dashboard/model` (and the model half of `/dashboard/freshness`): the champion's version, its
age since registration, and the as_of and age of the candidate index it serves, read from a real
MLflow store (SQLite under tmp_path) and a real facts database."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from models.index import CandidateIndex
from models.index_source import INDEX_RUN_TAG
from models.registry import INDEX_ARTIFACT, open_tracking
from services.api import app as api_app
from services.api.routes import dashboard
from services.feedback.facts import open_facts, record_batch
from tests.services.api.factories import RecordingPublisher
from tests.services.feedback.factories import T0, purchase
from xsell.settings import Settings, load_settings

KEY = "ops-test-key"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path, database_url=f"sqlite:///{tmp_path / 'api.db'}", api_key=KEY, link_secret="ops-test-secret"
    )


@pytest.fixture
def client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(dashboard, "REGISTRY_TTL_S", 0.0)  # every request reads the registry
    engine = open_facts(settings.db_url)
    with engine.begin() as db:
        record_batch(
            db,
            [],
            [],
            [
                (purchase("B1", "C1", T0 + timedelta(days=3), ("P1", 1, 2.0)), 1_000),
                (purchase("B0", "C2", T0, ("P1", 1, 2.0)), 1_000),
            ],
        )
    engine.dispose()
    with TestClient(api_app.create_app(settings, publisher=RecordingPublisher())) as test_client:
        yield test_client


def _index_run(settings: Settings, as_of: pd.Timestamp, tags: dict[str, str] | None = None) -> str:
    """A finished run holding a small candidate index built as of `as_of`."""
    lines = pd.DataFrame(
        {
            "order_id": ["1", "1", "2", "2"],
            "customer_id": ["C1", "C1", "C2", "C2"],
            "product_id": ["11", "12", "11", "12"],
            "product_name": ["MUG A", "MUG B", "MUG A", "MUG B"],
            "category": pd.Series([None] * 4, dtype="string"),
            "quantity": [1, 1, 1, 1],
            "unit_price": [1.0, 2.0, 1.0, 2.0],
            "ordered_at": pd.to_datetime(["2011-01-01", "2011-01-01", "2011-01-02", "2011-01-02"], utc=True),
            "is_return": [False] * 4,
        }
    )
    client = open_tracking(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name).experiment_id
    run_id = client.create_run(experiment, tags=tags or {}).info.run_id
    with tempfile.TemporaryDirectory() as scratch:
        folder = CandidateIndex.build(lines, as_of).save(Path(scratch) / INDEX_ARTIFACT)
        client.log_artifacts(run_id, str(folder), artifact_path=INDEX_ARTIFACT)
    client.set_terminated(run_id)
    return run_id


def test_without_a_registry_only_the_newest_purchase_is_known(client: TestClient, settings: Settings) -> None:
    body = client.get("/dashboard/model", headers={"X-API-Key": KEY}).json()
    assert body == {
        "model_version": None,
        "index_run_id": None,
        "index_as_of": None,
        "newest_purchase_at": (T0 + timedelta(days=3)).isoformat(),
        "index_age_s": None,
    }
    assert not (settings.home / "mlflow").exists()  # reading did not create a store


def test_shows_the_index_the_champion_serves_and_follows_a_refresh(client: TestClient, settings: Settings) -> None:
    trained_as_of = pd.Timestamp(T0) - pd.Timedelta(days=1)
    training_run = _index_run(settings, trained_as_of)  # no as_of tag: read from the index manifest
    tracking = open_tracking(settings)
    tracking.create_registered_model(settings.model_name)
    version = tracking.create_model_version(
        settings.model_name, source=f"runs:/{training_run}/model", run_id=training_run
    )
    tracking.set_registered_model_alias(settings.model_name, settings.champion_alias, str(version.version))

    body = client.get("/dashboard/model", headers={"X-API-Key": KEY}).json()
    assert body["model_version"] == 1 and body["index_run_id"] == training_run
    assert pd.Timestamp(body["index_as_of"]) == trained_as_of
    assert body["index_age_s"] == pytest.approx(4 * 86400)  # newest purchase T0 + 3 days
    fresh = client.get("/dashboard/freshness", headers={"X-API-Key": KEY}).json()
    registered_at = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
    assert (fresh["model_version"], fresh["model_registered_at"]) == (1, registered_at.isoformat())
    assert 0 <= fresh["model_age_s"] <= time.time() - registered_at.timestamp() + 1
    assert (fresh["index_as_of"], fresh["index_age_s"]) == (body["index_as_of"], body["index_age_s"])

    refreshed_as_of = pd.Timestamp(T0) + pd.Timedelta(days=3, hours=1)
    refresh_run = _index_run(settings, refreshed_as_of, {"index.as_of": refreshed_as_of.isoformat()})
    tracking.set_model_version_tag(settings.model_name, "1", INDEX_RUN_TAG, refresh_run)
    body = client.get("/dashboard/model", headers={"X-API-Key": KEY}).json()
    assert body["index_run_id"] == refresh_run and pd.Timestamp(body["index_as_of"]) == refreshed_as_of
    assert body["index_age_s"] == 0.0  # the index knows the newest purchase

    page = client.get("/dashboard", headers={"X-API-Key": KEY}).text
    for element in ("champion-version", "index-as-of", "index-age"):
        assert f'id="{element}"' in page
    assert client.get("/dashboard/model").status_code == 401
