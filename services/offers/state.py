"""Durable state of the offer service: the decision made for each event, and when offer e-mails
went out per customer (for frequency caps).

A re-delivered event finds its decision here and the same decision is produced again (same ids),
never a second, different one: reprocessing never duplicates and caps are not double-counted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from xsell.chunks import chunked, placeholders
from xsell.offers import Channel, OfferDecision

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (event_id TEXT PRIMARY KEY, decision TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS emails (decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS emails_by_customer ON emails (customer_id, at);
"""


class OfferStateStore:
    """SQLite file under XSELL_HOME holding decisions and e-mail times."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def decided(self, event_ids: Iterable[str]) -> dict[str, OfferDecision]:
        """Decisions already made for these events."""
        ids = list(set(event_ids))
        found: dict[str, OfferDecision] = {}
        for chunk in chunked(ids):
            rows = self.db.execute(
                f"SELECT event_id, decision FROM decisions WHERE event_id IN ({placeholders(chunk)})",  # noqa: S608  (placeholders only)
                chunk,
            )
            found.update({e: OfferDecision.model_validate_json(d) for e, d in rows})
        return found

    def latest(self, limit: int) -> list[OfferDecision]:
        """The ``limit`` decisions stored last, newest first."""
        rows = self.db.execute("SELECT decision FROM decisions ORDER BY rowid DESC LIMIT ?", (limit,))
        return [OfferDecision.model_validate_json(d) for (d,) in rows]

    def email_times(self, customer_ids: Iterable[str], since: datetime) -> dict[str, tuple[datetime, ...]]:
        """When offer e-mails went to each customer since `since` (event time)."""
        ids = list(set(customer_ids))
        times: dict[str, list[datetime]] = {c: [] for c in ids}
        for chunk in chunked(ids):
            rows = self.db.execute(
                f"SELECT customer_id, at FROM emails WHERE at >= ? AND customer_id IN ({placeholders(chunk)})",  # noqa: S608  (placeholders only)
                [since.isoformat(), *chunk],
            )
            for customer_id, at in rows:
                times[customer_id].append(datetime.fromisoformat(at))
        return {c: tuple(sorted(t)) for c, t in times.items()}

    def record(self, decisions: Sequence[OfferDecision], payloads: Sequence[bytes]) -> None:
        """Store decisions (and their e-mails) in one transaction; idempotent. ``payloads``: the
        decisions' JSON (``OfferDecision.to_bytes``), which the caller also produces."""
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO decisions VALUES (?, ?)",
                [(decision.event_id, payload.decode()) for decision, payload in zip(decisions, payloads, strict=True)],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO emails VALUES (?, ?, ?)",
                [
                    (decision.decision_id, decision.customer_id, decision.occurred_at.isoformat())
                    for decision in decisions
                    if Channel.EMAIL in decision.channels and decision.customer_id
                ],
            )

    def close(self) -> None:
        """Close the database."""
        self.db.close()
