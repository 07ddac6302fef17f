"""`xsell index refresh`: the --every parser and the command's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.shell import xsell
from training.schedule import parse_every


@pytest.mark.parametrize(
    ("text", "seconds"), [("1d", 86400), ("6h", 21600), ("30m", 1800), ("90s", 90), (" 2D ", 172800)]
)
def test_every_accepts_whole_intervals(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "d", "0h", "1.5h", "-1d", "1w", "1d2h", "one day"])
def test_every_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="--every must be a positive whole number followed by s, m, h or d"):
        parse_every(text)


def test_a_bad_every_is_a_one_line_error(tmp_path: Path) -> None:
    result = xsell("index", "refresh", "--every", "5x", home=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: --every must be a positive whole number followed by s, m, h or d (e.g. 30m, 6h, 1d), not '5x'"
    ]
    assert "Traceback" not in result.stderr


def test_refresh_without_a_champion_says_what_to_do(tmp_path: Path) -> None:
    result = xsell("index", "refresh", home=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train a model first" in errors[0]


def test_help_explains_the_command(tmp_path: Path) -> None:
    result = xsell("index", "refresh", "--help", home=tmp_path)
    assert result.returncode == 0 and "--every" in result.stdout and "newest" in result.stdout
