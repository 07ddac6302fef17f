"""`xsell experiment`: `conclude` moves the registry aliases of a real local MLflow store (SQLite
under tmp_path; the versions are registered from an empty run, no model is trained), `status`
reads the facts and the aliases, and a wrong use of the flags is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from models.registry import open_tracking
from services.feedback.facts import open_facts, record_batch
from tests.cli.shell import xsell
from tests.services.feedback.factories import T0, decision
from xsell.offers import OfferType, Variant
from xsell.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path)


@pytest.fixture
def registry(settings: Settings) -> MlflowClient:
    """Versions 1 (champion) and 2 (challenger) of the ranker, registered from one empty run."""
    client = open_tracking(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name).experiment_id
    run_id = client.create_run(experiment).info.run_id
    client.set_terminated(run_id)
    client.create_registered_model(settings.model_name)
    for _ in range(2):
        client.create_model_version(settings.model_name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(settings.model_name, settings.champion_alias, "1")
    client.set_registered_model_alias(settings.model_name, settings.challenger_alias, "2")
    return client


def _aliases(client: MlflowClient, settings: Settings) -> dict[str, str]:
    """The ranker's aliases and their versions (as text: int on SQLite, str over REST)."""
    return {alias: str(version) for alias, version in client.get_registered_model(settings.model_name).aliases.items()}


def test_conclude_promote_makes_the_challenger_champion(
    registry: MlflowClient, settings: Settings, tmp_path: Path
) -> None:
    result = xsell("experiment", "conclude", "--promote", home=tmp_path)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert (outcome["action"], outcome["champion_version"], outcome["previous_champion"]) == ("promote", 2, 1)
    assert _aliases(registry, settings) == {settings.champion_alias: "2"}
    tags = registry.get_model_version(settings.model_name, "2").tags
    assert (tags["promotion.reason"], tags["promotion.previous_champion"]) == ("won the live experiment", "1")

    again = xsell("experiment", "conclude", "--stop", home=tmp_path)  # no challenger any more
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert [line for line in again.stderr.splitlines() if line.startswith("error:")] == [
        f"error: no live experiment: {settings.model_name} has no '{settings.challenger_alias}' version"
    ]


def test_conclude_stop_keeps_the_champion_and_status_shows_the_aliases(
    registry: MlflowClient, settings: Settings, tmp_path: Path
) -> None:
    engine = open_facts(settings.db_url)
    with engine.begin() as db:
        record_batch(
            db,
            [
                (
                    decision(
                        "H1", "C1", T0, ("P1", OfferType.CROSS_SELL), model_version="2", variant=Variant.CHALLENGER
                    ),
                    None,
                )
            ],
            [],
            [],
        )
    engine.dispose()
    status = xsell("experiment", "status", "--json", home=tmp_path)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["aliases"] == {settings.champion_alias: 1, settings.challenger_alias: 2}
    assert report["variants"]["challenger"]["offers_sent"] == 1 and report["verdict"] == "no champion traffic"

    result = xsell("experiment", "conclude", "--stop", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["champion_version"] == 1
    assert _aliases(registry, settings) == {settings.champion_alias: "1"}
    assert "promotion.reason" not in registry.get_model_version(settings.model_name, "2").tags

    table = xsell("experiment", "status", home=tmp_path)
    assert (
        table.returncode == 0
        and "challenger -> unset" in table.stdout
        and "verdict: no champion traffic" in table.stdout
    )


@pytest.mark.parametrize("flags", [(), ("--promote", "--stop")])
def test_conclude_needs_exactly_one_flag(flags: tuple[str, ...], tmp_path: Path) -> None:
    result = xsell("experiment", "conclude", *flags, home=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "exactly one of --promote" in errors[0]
