"""Structured logs: one JSON object per line, extra fields included.

A service (`xsell offers`, `xsell api`, ...) writes them to stderr, where its operator or supervisor
collects them. A one-shot command (`xsell train`, `make run`, ...) appends them to a file under
`XSELL_HOME/logs/`; its terminal shows only xsell's own warnings and errors, one short line each.

Services log facts (`log.info("batch handled", extra={"records": 500})`), never customer e-mail
addresses or names.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# the packages whose warnings a one-shot command shows on the terminal: xsell's own (a library's
# warning, such as Kafka's retries, is in the log file; the command's error line says what failed)
OWN_PACKAGES = frozenset({"xsell", "cli", "services", "training", "models", "features", "infra", "bench", "__main__"})
_NOISY = ("kafka", "feast", "mlflow", "alembic", "mail.log")  # mail.log: aiosmtpd logs addresses
_MLFLOW_CONFIGURED = ("mlflow", "alembic", "huey", "sqlalchemy.engine")  # what MLflow's import configures


class JsonFormatter(logging.Formatter):
    """Render a log record as one JSON line with its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line for `record`."""
        document: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        document.update(_extra(record))
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class ConsoleFormatter(logging.Formatter):
    """Render a record as one short line for a person: ``warning: message (field=value, ...)``,
    without the traceback (that is in the log file)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the line for `record`."""
        fields = ", ".join(f"{k}={v}" for k, v in _extra(record).items())
        line = f"{record.levelname.lower()}: {record.getMessage()}" + (f" ({fields})" if fields else "")
        return " ".join(line.split("\n"))


def _extra(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _own_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING and record.name.split(".", 1)[0] in OWN_PACKAGES


# Libraries' deprecation notices (ibis inside Feast, starlette, kafka-python's use of a deprecated
# importlib.resources call, ...) are not the user's to act on: dropped where warnings are shown. A
# filter alone would not hold: Feast puts its own "once" filter for DeprecationWarning in front at
# import. A notice is the user's only when xsell's code raised it.
_show_warning = warnings.showwarning
_XSELL_SOURCE = Path(__file__).resolve().parents[1]


def is_library_notice(category: type[Warning], filename: str) -> bool:
    """A deprecation notice attributed to code outside xsell (a library, or the standard library a
    library called): nothing the user can act on."""
    if not issubclass(category, (DeprecationWarning, FutureWarning)):
        return False
    path = Path(filename).resolve()
    return "site-packages" in path.parts or not path.is_relative_to(_XSELL_SOURCE)


def _show_actionable_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    if is_library_notice(category, filename):
        return
    _show_warning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


def show_only_actionable_warnings() -> None:
    """Show warnings as Python does, except libraries' deprecation notices (`is_library_notice`)."""
    warnings.showwarning = _show_actionable_warning


def configure_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    """Send JSON logs at `level` to stderr, or, given `log_file`, append them to that file and show
    only xsell's own warnings and errors on stderr (`ConsoleFormatter`). Libraries' chatter (Kafka,
    Feast, MLflow) is logged only from WARNING; MLflow logs through these handlers, not its own.
    Libraries' deprecation notices are not shown (`show_only_actionable_warnings`)."""
    show_only_actionable_warnings()
    # MLflow gives its loggers a stderr handler of their own when it is imported, unless told not to
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    handlers: list[logging.Handler] = []
    if log_file is None:
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[0].setFormatter(JsonFormatter())
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(JsonFormatter())
        to_terminal = logging.StreamHandler(sys.stderr)
        to_terminal.setFormatter(ConsoleFormatter())
        to_terminal.addFilter(_own_warning)
        handlers += [to_file, to_terminal]
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler) and isinstance(old.formatter, JsonFormatter):
            old.close()  # a log file of an earlier call
    root.handlers[:] = handlers
    root.setLevel(level.upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _MLFLOW_CONFIGURED:  # MLflow was imported first: its records come here instead
        logger = logging.getLogger(name)
        if logger.handlers and not logger.propagate:
            logger.handlers.clear()
            logger.propagate = True
