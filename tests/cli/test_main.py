"""The CLI's front door: --help explains every command; an unusable XSELL_HOME is a clear error."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.shell import xsell


def test_help_lists_every_stage() -> None:
    result = xsell("--help")
    assert result.returncode == 0
    for command in (
        "run",
        "stack",
        "replay",
        "ingest",
        "archive",
        "import",
        "features",
        "train",
        "retrain",
        "experiment",
        "evaluate",
        "promote",
        "recommend",
        "offers",
        "deliver",
        "inbox",
        "feedback",
        "report",
        "api",
    ):
        assert command in result.stdout, command


def test_a_file_where_home_should_be_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "not-a-folder"
    home.write_text("")
    result = xsell("stack", "status", env={"XSELL_HOME": str(home)})
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert "not a writable folder" in error_lines[0] and str(home) in error_lines[0]
    assert "Traceback" not in result.stderr


def test_a_backfill_shows_no_library_deprecation_notices(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "data" / "online_retail_sample.parquet"
    result = xsell("features", "backfill", "--data", str(sample), env={"XSELL_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"events":' in result.stdout  # the JSON summary still prints
    assert "DeprecationWarning" not in result.stderr and "FutureWarning" not in result.stderr


def test_a_train_keeps_mlflow_prints_off_the_console(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "data" / "online_retail_sample.parquet"
    result = xsell("train", "--data", str(sample), env={"XSELL_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"model_version": 1' in result.stdout  # the summary says what was registered
    assert "Successfully registered" not in result.stderr + result.stdout
    assert "Created version" not in result.stderr + result.stdout
    assert "Successfully registered model 'xsell-ranker'" in (tmp_path / "logs" / "train.log").read_text()


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line of a failed command (exit 1, no traceback)."""
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    return error_lines[0]


COMMANDS_READING_A_HISTORY = [["train", "--data"], ["backtest", "--data"], ["features", "backfill", "--data"]]


@pytest.mark.parametrize("command", COMMANDS_READING_A_HISTORY, ids=lambda c: c[0])
def test_a_missing_history_file_is_one_line(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no-such-orders.csv"
    line = _one_error_line(xsell(*command, str(missing), env={"XSELL_HOME": str(tmp_path / "home")}))
    assert "not found" in line and str(missing) in line and "--data" in line


@pytest.mark.parametrize("command", COMMANDS_READING_A_HISTORY, ids=lambda c: c[0])
def test_a_history_of_an_unknown_layout_is_one_line(tmp_path: Path, command: list[str]) -> None:
    other = tmp_path / "other.csv"
    other.write_text("sku,when\nA1,2025-01-01\n")
    line = _one_error_line(xsell(*command, str(other), env={"XSELL_HOME": str(tmp_path / "home")}))
    assert "unknown purchase-history layout" in line and "order_id" in line and "found ['sku', 'when']" in line


def test_recommending_before_any_model_is_trained_is_one_line(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "data" / "online_retail_sample.parquet"
    result = xsell(
        "recommend", "--orders", str(sample), "--out", str(tmp_path / "offers.csv"), env={"XSELL_HOME": str(tmp_path)}
    )
    line = _one_error_line(result)
    assert "no champion model" in line and "xsell train --data FILE" in line
    assert not (tmp_path / "offers.csv").exists()


def test_auditing_before_any_model_is_trained_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(xsell("audit", "--out", str(tmp_path / "audit"), env={"XSELL_HOME": str(tmp_path)}))
    assert "no champion model" in line
    assert not (tmp_path / "audit").exists()
