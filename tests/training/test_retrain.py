"""Training from the purchase archive and the retrain step, on the shipped sample of real
purchases in a real archive (SQLite), feature store (Feast) and MLflow store (slower: three
trainings on the sample)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.archive import PurchaseArchive
from models.registry import alias_version, champion_version, open_tracking, run_of_version
from training.retrain import EmptyArchiveError, archive_snapshot, retrain, train_from_archive
from xsell.history import read_purchase_history
from xsell.settings import REPO_ROOT, Settings, load_settings

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame, int]:
    """A home whose archive holds the sample; the first model trained on all but its last 30 days."""
    settings = load_settings(home=tmp_path_factory.mktemp("retrain"))
    lines = read_purchase_history(SAMPLE).lines
    archive = PurchaseArchive(settings.db_url)
    archive.add_lines(lines)
    archive.close()
    until = (lines["ordered_at"].max() - pd.Timedelta(days=30)).to_pydatetime()
    first = train_from_archive(settings, until=until, backfill=True)
    return settings, lines, int(first["model_version"])


def test_the_first_model_knows_only_its_window(archived: tuple[Settings, pd.DataFrame, int]) -> None:
    settings, lines, first = archived
    client = open_tracking(settings)
    assert champion_version(client, settings) == first
    last_at = pd.Timestamp(run_of_version(client, settings, first).data.tags["data.last_at"])
    assert last_at < lines["ordered_at"].max() - pd.Timedelta(days=29)


def test_a_retrain_covers_the_newest_archived_day_and_goes_on_trial(
    archived: tuple[Settings, pd.DataFrame, int],
) -> None:
    settings, lines, first = archived
    result = retrain(settings, live_trial=True)
    client = open_tracking(settings)
    version = int(result["model_version"])
    tags = run_of_version(client, settings, version).data.tags
    assert pd.Timestamp(tags["data.last_at"]) == lines["ordered_at"].max()
    assert result["outcome"] == "challenger" and alias_version(client, settings, "challenger") == version
    assert champion_version(client, settings) == first  # a live trial never moves the champion
    gate = result["gate"]
    assert gate["beats_champion"] == (gate["candidate_ndcg"] > gate["champion_ndcg"])
    assert "re-evaluation" in gate["basis"]  # the two runs saw different data: both scored on the new one's


def test_a_retrain_without_a_live_trial_follows_the_gate(archived: tuple[Settings, pd.DataFrame, int]) -> None:
    settings, _, _ = archived
    client = open_tracking(settings)
    before = champion_version(client, settings)
    result = retrain(settings)
    version = int(result["model_version"])
    if result["gate"]["beats_champion"]:
        assert result["outcome"] == "champion" and champion_version(client, settings) == version
    else:
        assert result["outcome"] == "challenger" and champion_version(client, settings) == before
        assert alias_version(client, settings, "challenger") == version


def test_an_empty_archive_says_where_purchases_come_from(tmp_path: Path) -> None:
    with pytest.raises(EmptyArchiveError, match="xsell import --data FILE"):
        archive_snapshot(load_settings(home=tmp_path))


def test_a_window_without_lines_names_the_archive_span(archived: tuple[Settings, pd.DataFrame, int]) -> None:
    settings, _, _ = archived
    early = datetime(2001, 1, 1, tzinfo=UTC)
    with pytest.raises(EmptyArchiveError, match="choose another --since/--until"):
        archive_snapshot(settings, since=early, until=early + timedelta(days=30))


def test_a_snapshot_is_the_window_as_a_history_file(archived: tuple[Settings, pd.DataFrame, int]) -> None:
    settings, lines, _ = archived
    since = datetime(2011, 6, 1, tzinfo=UTC)
    until = datetime(2011, 7, 1, tzinfo=UTC)
    snapshot = archive_snapshot(settings, since, until)
    read = read_purchase_history(snapshot.path).lines
    window = lines[(lines["ordered_at"] >= since) & (lines["ordered_at"] < until)]
    assert snapshot.lines == len(window) == len(read)
    assert read["is_return"].sum() == window["is_return"].sum()
    assert archive_snapshot(settings, since, until).path == snapshot.path  # the same lines, the same file
