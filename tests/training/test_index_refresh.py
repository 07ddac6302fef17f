"""`xsell index refresh` on a ranker trained on the shipped sample (real embedded Feast store, real
MLflow store under tmp_path): purchases the archive keeps after training reach a fresh
candidate index, logged as a run of its own and tagged on the champion, and a running
ChampionWatcher swaps it in without a restart (slower: trains once, about a minute)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.archive import PurchaseArchive
from models.champion import load_champion
from models.index_source import INDEX_RUN_TAG
from models.registry import INDEX_ARTIFACT, open_tracking
from services.offers.champion import ChampionWatcher
from training import commands
from training.index_refresh import KIND, KIND_TAG, RefreshError, RefreshResult, refresh_index, run_every
from xsell.events import EventType, LineItem, PurchaseEvent, event_id_for
from xsell.history import read_purchase_history
from xsell.metrics import INDEX_AS_OF, MODEL_REGISTERED_AT, MODEL_VERSION
from xsell.settings import REPO_ROOT, Settings, load_settings

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"
NEW_PRODUCT = "99901"  # never sold in the sample


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("index-refresh-home")
    settings = load_settings(home=home)
    commands.train(settings, SAMPLE)
    return settings


def _later_orders(count: int, start: pd.Timestamp, companion: str) -> list[PurchaseEvent]:
    """Orders after the sample, each with the new product and a known one."""
    events = []
    for number in range(count):
        order_id = f"R{start:%Y%m%d}{number}"
        events.append(
            PurchaseEvent(
                event_id=event_id_for(order_id, EventType.PURCHASE),
                order_id=order_id,
                customer_id=f"9{number:04d}",
                occurred_at=(start + timedelta(hours=number)).to_pydatetime(),
                lines=(
                    LineItem(product_id=NEW_PRODUCT, name="TEST LANTERN NEW", quantity=1, unit_price=9.95),
                    LineItem(product_id=companion, quantity=2, unit_price=2.55),
                ),
            )
        )
    return events


def test_refresh_builds_at_the_newest_line_tags_the_champion_and_is_served_without_restart(trained: Settings) -> None:
    settings = trained
    lines = read_purchase_history(SAMPLE).lines
    companion = lines[~lines["is_return"]]["product_id"].value_counts().index[0]
    newest = lines["ordered_at"].max()

    # nothing new since training: the champion's index already knows every line
    unchanged = refresh_index(settings)
    assert unchanged.refreshed is False and unchanged.run_id is None
    assert pd.Timestamp(unchanged.as_of) == newest + pd.Timedelta(microseconds=1)

    watcher = ChampionWatcher(settings, refresh_s=0.3)
    try:
        before = watcher.current()
        assert before is not None and before.index_run_id == before.run_id
        assert NEW_PRODUCT not in before.index.position
        assert MODEL_VERSION._value.get() == before.version
        assert INDEX_AS_OF._value.get() == before.index_as_of.timestamp()
        registered_at = MODEL_REGISTERED_AT.labels("champion")._value.get()
        assert registered_at == before.registered_at and time.time() - 3600 < registered_at <= time.time()

        later = _later_orders(3, pd.Timestamp(newest) + pd.Timedelta(days=2), companion)
        PurchaseArchive(settings.db_url).add_events(later)  # what the archive service took from the stream
        result = refresh_index(settings)

        expected_as_of = pd.Timestamp(later[-1].occurred_at) + pd.Timedelta(microseconds=1)
        assert result.refreshed and pd.Timestamp(result.as_of) == expected_as_of
        assert result.version == before.version and result.previous_run_id == before.run_id
        assert result.lines == len(lines) + 6
        client = open_tracking(settings)
        run = client.get_run(result.run_id)
        assert run.data.tags[KIND_TAG] == KIND and run.info.status == "FINISHED"
        assert run.data.tags["index.as_of"] == expected_as_of.isoformat()
        assert run.data.tags["index.items"] == str(result.items) and run.data.tags["model.version"] == str(
            before.version
        )
        assert run.info.experiment_id == client.get_run(before.run_id).info.experiment_id
        assert INDEX_ARTIFACT in {a.path for a in client.list_artifacts(result.run_id)}
        tags = client.get_model_version(settings.model_name, str(before.version)).tags
        assert tags[INDEX_RUN_TAG] == result.run_id

        deadline = time.monotonic() + 60
        while watcher.current().index_run_id != result.run_id and time.monotonic() < deadline:
            time.sleep(0.2)
        served = watcher.current()
        assert served.index_run_id == result.run_id and served.version == before.version
        assert served.index_as_of == expected_as_of > before.index_as_of
        assert served.booster is not None and served.index.config == before.index.config
        assert INDEX_AS_OF._value.get() == expected_as_of.timestamp()

        # candidates come from the fresh index: the new product seeds basket neighbours, and is offered
        after_new = served.generator.candidates_for("90000", [NEW_PRODUCT], expected_as_of)
        assert (after_new.loc[after_new["source"] == "basket", "seed_product_id"] == NEW_PRODUCT).any()
        assert companion in set(after_new["product_id"])
        old = before.generator.candidates_for("90000", [NEW_PRODUCT], expected_as_of)
        assert not (old["source"] == "basket").any()
        assert NEW_PRODUCT in served.index.position

        # load_champion follows the tag too
        loaded = load_champion(settings, settings.home / "loaded")
        assert loaded.index_run_id == result.run_id and loaded.index_as_of == expected_as_of

        # the command: the serving index now knows every line, so a second refresh logs nothing
        command = subprocess.run(
            [sys.executable, "-m", "cli.main", "index", "refresh"],
            capture_output=True,
            text=True,
            env={**os.environ, "XSELL_HOME": str(settings.home)},
            timeout=300,
            check=False,
        )
        assert command.returncode == 0, command.stderr
        summary = json.loads(command.stdout)
        assert summary["refreshed"] is False and summary["run_id"] is None
        assert summary["as_of"] == expected_as_of.isoformat() and summary["previous_run_id"] == result.run_id
        assert summary["version"] == before.version and summary["items"] == result.items
    finally:
        watcher.close()


def test_the_watcher_keeps_the_last_good_index_when_the_tagged_one_cannot_load(trained: Settings) -> None:
    settings = trained
    watcher = ChampionWatcher(settings, refresh_s=0.2)
    client = open_tracking(settings)
    try:
        serving = watcher.current()
        assert serving is not None
        experiment = client.get_experiment_by_name(settings.experiment_name).experiment_id
        empty_run = client.create_run(experiment, tags={KIND_TAG: KIND}).info.run_id  # a run without an index
        client.set_terminated(empty_run)
        client.set_model_version_tag(settings.model_name, str(serving.version), INDEX_RUN_TAG, empty_run)
        time.sleep(1.5)
        assert watcher.current() is serving  # the last good model and index keep serving
    finally:
        client.set_model_version_tag(settings.model_name, str(serving.version), INDEX_RUN_TAG, serving.index_run_id)
        watcher.close()


def test_the_service_loop_survives_a_failed_run_and_stops_on_request(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)  # no champion: the first run is due at once
    stop = threading.Event()
    calls: list[float] = []

    def flaky(_settings: Settings) -> RefreshResult:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RefreshError("the registry is away")
        if len(calls) == 3:
            stop.set()
        return RefreshResult(
            run_id="r",
            as_of="2011-12-10T00:00:00+00:00",
            items=1,
            version=1,
            lines=1,
            orders=1,
            previous_run_id="p",
            previous_as_of="2011-12-09T00:00:00+00:00",
            refreshed=True,
            seconds=0.0,
        )

    worker = threading.Thread(target=lambda: stats.append(run_every(settings, 0.2, stop, refresh=flaky)))
    stats: list[object] = []
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.15
    assert stats[0].runs == 3 and stats[0].failed == 1 and stats[0].changed == 2  # type: ignore[attr-defined]


def test_refresh_without_a_champion_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RefreshError, match="train a model first"):
        refresh_index(load_settings(home=tmp_path))


def test_refresh_without_archived_lines_is_a_clear_error(trained: Settings, tmp_path: Path) -> None:
    settings = load_settings(home=trained.home, database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(RefreshError, match="no order lines: import history"):
        refresh_index(settings)
