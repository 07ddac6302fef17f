"""The delivery outbox: one SQLite row per decision, so an e-mail is queued once and sent once.

The consumer inserts rendered messages (idempotently by decision id) and commits its offsets only
after that transaction; the sender claims due rows, sends them and marks them `sent`, or schedules
a retry with exponential back-off, or marks them `failed` when the server refused them for good.
Rows whose outcome has not yet been reported to `offer-feedback` are kept apart (`reported`), so a
crash between sending and producing feedback loses no feedback. Each call opens its own short
connection (WAL mode), so the consumer thread and the sender thread never share one.

Claims are leases held by a named sender (`leased_by`) that keeps a heartbeat in `senders`: a
second sender on the same file leaves leased rows alone, and the rows of a sender whose heartbeat
is older than `stale_s` (killed, host gone) are due again at once, without waiting for the lease.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from xsell.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    decision_id     TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    offer_ids       TEXT NOT NULL,
    message         BLOB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    finished_at     REAL,
    reported        INTEGER NOT NULL DEFAULT 0,
    leased_by       TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS senders (owner TEXT PRIMARY KEY, alive_at REAL NOT NULL);
"""


class OutboxStatus(StrEnum):
    """Where a queued e-mail stands."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class OutboxEntry:
    """What the consumer queues: a rendered message and the ids it carries."""

    decision_id: str
    customer_id: str
    offer_ids: tuple[str, ...]
    message: bytes


@dataclass(frozen=True)
class OutboxRow:
    """One row of the outbox."""

    decision_id: str
    customer_id: str
    offer_ids: tuple[str, ...]
    message: bytes
    status: OutboxStatus
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    finished_at: float | None
    reported: bool
    leased_by: str | None = None


def retry_delay(attempts: int, base_s: float = 1.0, max_s: float = 60.0) -> float:
    """Exponential back-off after `attempts` failed attempts: base, 2 x base, 4 x base, ... capped at max."""
    return min(max_s, base_s * 2.0 ** max(0, min(attempts - 1, 62)))


class Outbox:
    """The outbox table in one SQLite file (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
            if "leased_by" not in columns:  # an outbox created before leases had owners
                db.execute("ALTER TABLE outbox ADD COLUMN leased_by TEXT")

    @classmethod
    def for_settings(cls, settings: Settings) -> Outbox:
        """The outbox of this XSELL_HOME (`HOME/outbox.db`)."""
        return cls(settings.home / "outbox.db")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0, isolation_level=None)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection in one immediate (write-locking) transaction, committed on success."""
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add(self, entries: Sequence[OutboxEntry], now: float) -> int:
        """Queue entries in one transaction, due now; a decision already queued is left as it is. Return how many are new."""
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (decision_id, customer_id, offer_ids, message, status, next_attempt_at,"
                " created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                [(e.decision_id, e.customer_id, json.dumps(list(e.offer_ids)), e.message, now, now) for e in entries],
            )
            return db.total_changes - before

    def claim_due(
        self,
        now: float,
        owner: str,
        limit: int = 100,
        lease_s: float = 600.0,
        stale_s: float = 30.0,
    ) -> list[OutboxRow]:
        """Pending rows due by `now`, oldest first, leased to `owner` for `lease_s` seconds (and
        `owner`'s heartbeat). Rows leased by a sender silent for more than `stale_s` are due now."""
        with self._transaction() as db:
            _beat(db, owner, now)
            rows = db.execute(
                "SELECT * FROM outbox WHERE status = 'pending' AND (next_attempt_at <= ? OR (leased_by IS NOT NULL"
                " AND leased_by != ? AND leased_by NOT IN (SELECT owner FROM senders WHERE alive_at >= ?)))"
                " ORDER BY next_attempt_at, created_at LIMIT ?",
                (now, owner, now - stale_s, limit),
            ).fetchall()
            db.executemany(
                "UPDATE outbox SET next_attempt_at = ?, leased_by = ? WHERE decision_id = ?",
                [(now + lease_s, owner, row[0]) for row in rows],
            )
        return [_row(row) for row in rows]

    def heartbeat(self, owner: str, now: float) -> None:
        """`owner` is alive: its leases hold."""
        with self._transaction() as db:
            _beat(db, owner, now)

    def retire(self, owner: str, now: float) -> None:
        """`owner` stops: its unsent claims are due again now and its heartbeat is gone."""
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET next_attempt_at = ?, leased_by = NULL WHERE leased_by = ? AND status = 'pending'",
                (now, owner),
            )
            db.execute("DELETE FROM senders WHERE owner = ?", (owner,))

    def release(self, decision_ids: Sequence[str], now: float) -> None:
        """End the lease of claimed rows that were not attempted: due again at `now`."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET next_attempt_at = ?, leased_by = NULL WHERE decision_id = ? AND status = 'pending'",
                [(now, d) for d in decision_ids],
            )

    def mark_sent(self, decision_id: str, now: float) -> None:
        """The server accepted the message."""
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, finished_at = ?, last_error = NULL,"
                " leased_by = NULL WHERE decision_id = ?",
                (now, decision_id),
            )

    def mark_retry(self, decision_id: str, error: str, now: float, base_s: float = 1.0, max_s: float = 60.0) -> float:
        """A transient failure: count the attempt and schedule the next one; return its time."""
        with self._transaction() as db:
            found = db.execute("SELECT attempts FROM outbox WHERE decision_id = ?", (decision_id,)).fetchone()
            attempts = (found[0] if found else 0) + 1
            next_attempt_at = now + retry_delay(attempts, base_s, max_s)
            db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, leased_by = NULL"
                " WHERE decision_id = ? AND status = 'pending'",
                (attempts, next_attempt_at, error[:1000], decision_id),
            )
        return next_attempt_at

    def mark_failed(self, decision_id: str, error: str, now: float) -> None:
        """A permanent refusal (e.g. unknown recipient): never retried."""
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, finished_at = ?, last_error = ?,"
                " leased_by = NULL WHERE decision_id = ?",
                (now, error[:1000], decision_id),
            )

    def unreported(self, limit: int = 500) -> list[OutboxRow]:
        """Sent or failed rows whose feedback has not been produced yet."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM outbox WHERE status IN ('sent', 'failed') AND reported = 0 ORDER BY finished_at LIMIT ?",
                (limit,),
            ).fetchall()
        return [_row(row) for row in rows]

    def mark_reported(self, decision_ids: Sequence[str]) -> None:
        """Their feedback was acknowledged by the broker."""
        with self._transaction() as db:
            db.executemany("UPDATE outbox SET reported = 1 WHERE decision_id = ?", [(d,) for d in decision_ids])

    def get(self, decision_id: str) -> OutboxRow | None:
        """One row by decision id."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM outbox WHERE decision_id = ?", (decision_id,)).fetchone()
        return _row(row) if row else None

    def counts(self) -> dict[str, int]:
        """Rows per status (every status present, zero if none)."""
        with self._transaction() as db:
            found = dict(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        return {status.value: int(found.get(status.value, 0)) for status in OutboxStatus}

    def next_due_at(self) -> float | None:
        """When the earliest pending row becomes due (None when nothing is pending)."""
        with self._transaction() as db:
            found = db.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'").fetchone()
        return found[0] if found else None


def _beat(db: sqlite3.Connection, owner: str, now: float) -> None:
    db.execute(
        "INSERT INTO senders VALUES (?, ?) ON CONFLICT (owner) DO UPDATE SET alive_at = excluded.alive_at", (owner, now)
    )


def _row(row: tuple[Any, ...]) -> OutboxRow:
    (
        decision_id,
        customer_id,
        offer_ids,
        message,
        status,
        attempts,
        next_attempt_at,
        last_error,
        created_at,
        finished_at,
        reported,
        leased_by,
    ) = row
    return OutboxRow(
        decision_id=decision_id,
        customer_id=customer_id,
        offer_ids=tuple(json.loads(offer_ids)),
        message=bytes(message),
        status=OutboxStatus(status),
        attempts=int(attempts),
        next_attempt_at=float(next_attempt_at),
        last_error=last_error,
        created_at=float(created_at),
        finished_at=float(finished_at) if finished_at is not None else None,
        reported=bool(reported),
        leased_by=leased_by,
    )
