"""Structured logs: one JSON object per line on stderr, extra fields included.

Services log facts (`log.info("batch handled", extra={"records": 500})`), never customer e-mail
addresses or names.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a log record as one JSON line with its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line for `record`."""
        document = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        document.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send JSON logs to stderr at `level`; libraries' chatter (Kafka, Feast, MLflow) only from WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "feast", "mlflow", "alembic", "mail.log"):  # mail.log: aiosmtpd logs addresses
        logging.getLogger(noisy).setLevel(logging.WARNING)
