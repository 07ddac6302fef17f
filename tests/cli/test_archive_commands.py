"""The archive's commands from the shell: `xsell import` loads an export once, `xsell train`
without --data reads the archive, and wrong combinations are one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli.shell import xsell
from tests.features.orders import write_orders


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_an_export_imported_twice_lands_once(tmp_path: Path) -> None:
    orders = write_orders(tmp_path / "orders.csv")
    first = json.loads(xsell("import", "--data", str(tmp_path / "orders.csv"), home=tmp_path).stdout)
    again = json.loads(xsell("import", "--data", str(tmp_path / "orders.csv"), home=tmp_path).stdout)
    assert first["added"] == len(orders) and first["archive"]["lines"] == len(orders)
    assert again["added"] == 0 and again["already_archived"] == len(orders)
    assert again["archive"]["lines"] == len(orders)


def test_training_on_an_empty_archive_says_where_purchases_come_from(tmp_path: Path) -> None:
    result = xsell("train", home=tmp_path)
    assert result.returncode == 1
    (error,) = _errors(result)
    assert "purchase archive is empty" in error and "xsell import --data FILE" in error


def test_a_window_goes_with_the_archive_not_with_a_file(tmp_path: Path) -> None:
    write_orders(tmp_path / "orders.csv")
    result = xsell("train", "--data", str(tmp_path / "orders.csv"), "--since", "2011-01-01", home=tmp_path)
    assert result.returncode == 1
    assert _errors(result) == ["error: --since and --until choose a window of the archive: leave them out with --data"]


def test_a_bad_retrain_interval_is_a_one_line_error(tmp_path: Path) -> None:
    result = xsell("retrain", "--every", "weekly", home=tmp_path)
    assert result.returncode == 1
    assert len(_errors(result)) == 1 and "--every must be a positive whole number" in _errors(result)[0]
