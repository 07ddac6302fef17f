"""Expected errors of the CLI: one `error:` line naming the problem and the fix, exit 1, no traceback.

A missing or unknown-layout history file is covered in test_main.py; these are the broker that is
not there, a port that is taken and a model that was never trained. Each fails before any slow work.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.kafka.broker import free_port
from tests.cli.shell import xsell
from tests.cli.test_main import _one_error_line

UCI_ORDER = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
)


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    """A one-line purchase history in the UCI layout."""
    path = tmp_path / "orders.csv"
    path.write_text(UCI_ORDER)
    return path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on for the test's duration."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_broker_that_is_not_reachable_is_one_line(tmp_path: Path, orders: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    home = tmp_path / "home"
    result = xsell("replay", "--data", str(orders), env={"XSELL_HOME": str(home), "XSELL_KAFKA_BOOTSTRAP": bootstrap})
    line = _one_error_line(result)
    assert line == (
        f"error: Kafka broker not reachable at {bootstrap}: start it with `xsell stack up` (or `make run`), "
        "or set XSELL_KAFKA_BOOTSTRAP to a running broker's host:port"
    )
    assert (home / "logs" / "replay.log").exists()  # a one-shot command logs to its file
    assert '"level"' not in result.stderr  # and no JSON log line reaches the terminal


def test_an_api_port_in_use_is_one_line(tmp_path: Path, taken_port: int) -> None:
    env = {"XSELL_HOME": str(tmp_path), "XSELL_API_HOST": "127.0.0.1", "XSELL_API_PORT": str(taken_port)}
    line = _one_error_line(xsell("api", env=env))
    assert line == (
        f"error: port {taken_port} on 127.0.0.1 is in use: stop what listens there or set XSELL_API_PORT to a free port"
    )


def test_scoring_the_champion_before_any_model_is_trained_is_one_line(tmp_path: Path, orders: Path) -> None:
    home = tmp_path / "home"
    result = xsell(
        "evaluate", "--champion", "--data", str(orders), "--out", str(tmp_path / "eval"), env={"XSELL_HOME": str(home)}
    )
    line = _one_error_line(result)
    assert line == (
        "error: no champion model: xsell-ranker has no 'champion' version: train a model first (xsell train --data FILE)"
    )
    assert not (tmp_path / "eval").exists()


def test_promoting_before_any_model_is_trained_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(xsell("promote", env={"XSELL_HOME": str(tmp_path)}))
    assert line == (
        "error: no model to promote: xsell-ranker has no versions: train a model first (xsell train --data FILE)"
    )
