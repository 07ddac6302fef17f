"""configure_logging: a service logs JSON lines to stderr; a one-shot command logs them to a file
and shows only xsell's own warnings on the terminal, one short line each."""

from __future__ import annotations

import importlib.resources
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from xsell import logs
from xsell.logs import configure_logging, is_library_notice


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


def test_a_service_logs_json_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("services.offers").info("batch handled", extra={"records": 3})
    line = json.loads(capsys.readouterr().err.strip())
    assert (line["level"], line["logger"], line["msg"], line["records"]) == (
        "info",
        "services.offers",
        "batch handled",
        3,
    )


def test_a_one_shot_command_logs_to_its_file_and_shows_only_own_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "logs" / "train.log"
    configure_logging("INFO", log_file)
    logging.getLogger("training.commands").info("step done", extra={"step": "backfill"})
    logging.getLogger("training.commands").warning("metrics port unavailable", extra={"port": 9100})
    logging.getLogger("kafka.net.manager").warning("Bootstrap connection failed")
    logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("features.backfill").exception("backfill failed")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "warning: metrics port unavailable (port=9100)",
        "error: backfill failed",  # the traceback is in the file only
    ]
    logging.getLogger().handlers[0].flush()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(line["logger"], line["msg"]) for line in lines] == [
        ("training.commands", "step done"),
        ("training.commands", "metrics port unavailable"),
        ("kafka.net.manager", "Bootstrap connection failed"),  # a library's warning: in the file only
        ("features.backfill", "backfill failed"),  # MLflow's INFO chatter is not logged at all
    ]
    assert "RuntimeError: boom" in lines[-1]["exc"]


def test_only_deprecation_notices_raised_in_xsell_code_are_shown() -> None:
    stdlib = importlib.resources.__file__  # e.g. kafka-python calling a deprecated importlib.resources function
    assert is_library_notice(DeprecationWarning, stdlib)
    assert is_library_notice(FutureWarning, "/x/.venv/lib/python3.11/site-packages/pandas/core/frame.py")
    assert not is_library_notice(DeprecationWarning, str(Path(__file__).resolve().parents[2] / "cli" / "main.py"))
    assert not is_library_notice(UserWarning, stdlib)


def test_configured_logging_drops_libraries_deprecation_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(logs, "_show_warning", lambda message, *_: shown.append(str(message)))
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    configure_logging("WARNING")  # what every command and benchmark calls
    own = str(Path(__file__).resolve().parents[2] / "xsell" / "logs.py")
    warnings.showwarning("old API", DeprecationWarning, "/x/site-packages/ibis/duckdb.py", 1)
    warnings.showwarning("check this", UserWarning, "/x/site-packages/ibis/duckdb.py", 2)
    warnings.showwarning("our old API", DeprecationWarning, own, 3)
    assert shown == ["check this", "our old API"]
