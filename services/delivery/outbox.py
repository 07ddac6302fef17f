"""The delivery outbox: one row per decision, so an e-mail is queued once and sent once.

Tables `delivery_outbox` and `delivery_senders` in the configured database (`settings.db_url`:
SQLite under XSELL_HOME by default, PostgreSQL in the production profile), shared by every
delivery instance. The consumer inserts rendered messages (idempotently by decision id) and
commits its offsets only after that transaction; a sender claims due rows, sends them and marks
them `sent`, or schedules a retry with exponential back-off, or marks them `failed` when the
server refused them for good. Rows whose outcome has not yet been reported to `offer-feedback` are
kept apart (`reported`), so a crash between sending and producing feedback loses no feedback. Each
call is one short transaction, so the consumer thread and the sender thread never share one.

Claims are leases held by a named sender (`leased_by`) that keeps a heartbeat in
`delivery_senders`: other senders leave leased rows alone, and the rows of a sender whose
heartbeat is older than `stale_s` (killed, host gone) are due again at once, without waiting for
the lease. Each claim gives the row a new fencing token (`lease_token`, one more than the last):
`mark_sent`, `mark_retry`, `mark_failed` and `release` change a row only while it is pending and
still holds the token of the claim they were given, so a sender whose rows another sender took
over cannot overwrite that sender's outcome. Concurrent claims never take the same row: on
PostgreSQL they lock the due rows (`FOR UPDATE SKIP LOCKED`), in SQLite the claim's first
statement (the heartbeat) takes the database's write lock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, RowMapping

from xsell.chunks import chunked
from xsell.database import create_tables, engine_for, upsert_insert
from xsell.settings import Settings


class OutboxStatus(StrEnum):
    """Where a queued e-mail stands."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


metadata = MetaData()
outbox_table = Table(
    "delivery_outbox",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("offer_ids", Text, nullable=False),  # a JSON list
    Column("message", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("reported", Boolean, nullable=False),
    Column("leased_by", String(256)),
    Column("lease_token", BigInteger, nullable=False),
    CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_delivery_outbox_status"),
    Index("ix_delivery_outbox_due", "status", "next_attempt_at"),
    Index("ix_delivery_outbox_unreported", "reported", "finished_at"),
)
senders_table = Table(
    "delivery_senders",
    metadata,
    Column("owner", String(256), primary_key=True),
    Column("alive_at", Float, nullable=False),
)
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class OutboxEntry:
    """What the consumer queues: a rendered message and the ids it carries."""

    decision_id: str
    customer_id: str
    offer_ids: tuple[str, ...]
    message: bytes


@dataclass(frozen=True)
class OutboxRow:
    """One row of the outbox. From `claim_due`, `leased_by` is who held the lease before this claim
    (a sender taking over a silent one's rows) and `lease_token` is this claim's fencing token."""

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
    lease_token: int = 0


def retry_delay(attempts: int, base_s: float = 1.0, max_s: float = 60.0) -> float:
    """Exponential back-off after `attempts` failed attempts: base, 2 x base, 4 x base, ... capped at max."""
    return min(max_s, base_s * 2.0 ** max(0, min(attempts - 1, 62)))


class Outbox:
    """The outbox tables in the database at `url` (created on first use)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = engine_for(url)
        create_tables(metadata, self.engine)

    @classmethod
    def for_settings(cls, settings: Settings) -> Outbox:
        """The outbox in the configured database (`settings.db_url`)."""
        return cls(settings.db_url)

    def add(self, entries: Sequence[OutboxEntry], now: float) -> int:
        """Queue entries in one transaction, due now; a decision already queued is left as it is. Return how many are new."""
        if not entries:
            return 0
        rows = [
            {
                "decision_id": e.decision_id,
                "customer_id": e.customer_id,
                "offer_ids": json.dumps(list(e.offer_ids)),
                "message": e.message,
                "status": OutboxStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "reported": False,
                "lease_token": 0,
            }
            for e in entries
        ]
        added = 0
        with self.engine.begin() as db:
            insert = (
                upsert_insert(db, outbox_table)
                .on_conflict_do_nothing(index_elements=["decision_id"])
                .returning(outbox_table.c.decision_id)
            )
            for chunk in chunked(rows):
                added += len(db.execute(insert, list(chunk)).all())
        return added

    def claim_due(
        self,
        now: float,
        owner: str,
        limit: int = 100,
        lease_s: float = 600.0,
        stale_s: float = 30.0,
    ) -> list[OutboxRow]:
        """Pending rows due by `now`, oldest first, leased to `owner` for `lease_s` seconds, each with
        a new fencing token (and `owner`'s heartbeat). Rows leased by a sender silent for more than
        `stale_s` are due now."""
        alive = select(senders_table.c.owner).where(senders_table.c.alive_at >= now - stale_s)
        leased = outbox_table.c.leased_by
        due = (
            select(outbox_table)
            .where(
                outbox_table.c.status == OutboxStatus.PENDING.value,
                (outbox_table.c.next_attempt_at <= now)
                | (leased.is_not(None) & (leased != owner) & leased.not_in(alive.scalar_subquery())),
            )
            .order_by(outbox_table.c.next_attempt_at, outbox_table.c.created_at, outbox_table.c.decision_id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=outbox_table)  # PostgreSQL; SQLite holds the write lock
        )
        with self.engine.begin() as db:
            _beat(db, owner, now)  # first: in SQLite this takes the write lock, so claims never overlap
            rows = [_row(found) for found in db.execute(due).mappings()]
            for chunk in chunked([row.decision_id for row in rows]):
                db.execute(
                    update(outbox_table)
                    .where(outbox_table.c.decision_id.in_(chunk))
                    .values(next_attempt_at=now + lease_s, leased_by=owner, lease_token=outbox_table.c.lease_token + 1)
                )
        return [_claimed(row) for row in rows]

    def heartbeat(self, owner: str, now: float) -> None:
        """`owner` is alive: its leases hold."""
        with self.engine.begin() as db:
            _beat(db, owner, now)

    def retire(self, owner: str, now: float) -> None:
        """`owner` stops: its unsent claims are due again now and its heartbeat is gone."""
        with self.engine.begin() as db:
            db.execute(
                update(outbox_table)
                .where(outbox_table.c.leased_by == owner, outbox_table.c.status == OutboxStatus.PENDING.value)
                .values(next_attempt_at=now, leased_by=None)
            )
            db.execute(delete(senders_table).where(senders_table.c.owner == owner))

    def release(self, rows: Sequence[OutboxRow], now: float) -> int:
        """End the lease of claimed rows that were not attempted: due again at `now`. Return how many
        were released (a row another sender claimed since is left to it)."""
        with self.engine.begin() as db:
            return sum(_fenced(db, row, next_attempt_at=now, leased_by=None) for row in rows)

    def mark_sent(self, row: OutboxRow, now: float, *, beat: str | None = None) -> bool:
        """The server accepted the claimed row's message. False when the claim was fenced off.
        With `beat`, that sender's heartbeat at `now` is written in the same transaction."""
        with self.engine.begin() as db:
            if beat is not None:
                _beat(db, beat, now)
            return _fenced(
                db,
                row,
                status=OutboxStatus.SENT.value,
                attempts=row.attempts + 1,
                finished_at=now,
                last_error=None,
                leased_by=None,
            )

    def mark_retry(
        self, row: OutboxRow, error: str, now: float, base_s: float = 1.0, max_s: float = 60.0
    ) -> float | None:
        """A transient failure of the claimed row: count the attempt and schedule the next one;
        return its time (None when the claim was fenced off)."""
        attempts = row.attempts + 1
        next_attempt_at = now + retry_delay(attempts, base_s, max_s)
        with self.engine.begin() as db:
            done = _fenced(
                db,
                row,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                last_error=error[:MAX_ERROR_CHARS],
                leased_by=None,
            )
        return next_attempt_at if done else None

    def mark_failed(self, row: OutboxRow, error: str, now: float, *, beat: str | None = None) -> bool:
        """A permanent refusal of the claimed row (e.g. unknown recipient): never retried. False
        when the claim was fenced off. With `beat`, as `mark_sent`."""
        with self.engine.begin() as db:
            if beat is not None:
                _beat(db, beat, now)
            return _fenced(
                db,
                row,
                status=OutboxStatus.FAILED.value,
                attempts=row.attempts + 1,
                finished_at=now,
                last_error=error[:MAX_ERROR_CHARS],
                leased_by=None,
            )

    def unreported(self, limit: int = 500) -> list[OutboxRow]:
        """Sent or failed rows whose feedback has not been produced yet."""
        query = (
            select(outbox_table)
            .where(
                outbox_table.c.reported.is_(False),
                outbox_table.c.status.in_([OutboxStatus.SENT.value, OutboxStatus.FAILED.value]),
            )
            .order_by(outbox_table.c.finished_at, outbox_table.c.decision_id)
            .limit(limit)
        )
        with self.engine.connect() as db:
            return [_row(found) for found in db.execute(query).mappings()]

    def mark_reported(self, decision_ids: Sequence[str]) -> None:
        """Their feedback was acknowledged by the broker."""
        with self.engine.begin() as db:
            for chunk in chunked(list(decision_ids)):
                db.execute(update(outbox_table).where(outbox_table.c.decision_id.in_(chunk)).values(reported=True))

    def get(self, decision_id: str) -> OutboxRow | None:
        """One row by decision id."""
        with self.engine.connect() as db:
            found = db.execute(select(outbox_table).where(outbox_table.c.decision_id == decision_id)).mappings().first()
        return _row(found) if found is not None else None

    def counts(self) -> dict[str, int]:
        """Rows per status (every status present, zero if none)."""
        query = select(outbox_table.c.status, func.count()).group_by(outbox_table.c.status)
        with self.engine.connect() as db:
            found = {status: int(count) for status, count in db.execute(query)}
        return {status.value: found.get(status.value, 0) for status in OutboxStatus}

    def next_due_at(self) -> float | None:
        """When the earliest pending row becomes due (None when nothing is pending)."""
        query = select(func.min(outbox_table.c.next_attempt_at)).where(
            outbox_table.c.status == OutboxStatus.PENDING.value
        )
        with self.engine.connect() as db:
            earliest = db.execute(query).scalar()
        return float(earliest) if earliest is not None else None

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def _beat(db: Connection, owner: str, now: float) -> None:
    insert = upsert_insert(db, senders_table)
    db.execute(
        insert.on_conflict_do_update(index_elements=["owner"], set_={"alive_at": insert.excluded.alive_at}),
        {"owner": owner, "alive_at": now},
    )


def _fenced(db: Connection, row: OutboxRow, **values: Any) -> bool:
    """Update the row while it is pending and holds `row`'s lease token; return whether it did."""
    result = db.execute(
        update(outbox_table)
        .where(
            outbox_table.c.decision_id == row.decision_id,
            outbox_table.c.lease_token == row.lease_token,
            outbox_table.c.status == OutboxStatus.PENDING.value,
        )
        .values(**values)
    )
    return result.rowcount == 1


def _claimed(row: OutboxRow) -> OutboxRow:
    """The row as claimed: its new token (`leased_by` stays who held it before)."""
    return replace(row, lease_token=row.lease_token + 1)


def _row(found: RowMapping) -> OutboxRow:
    return OutboxRow(
        decision_id=found["decision_id"],
        customer_id=found["customer_id"],
        offer_ids=tuple(json.loads(found["offer_ids"])),
        message=bytes(found["message"]),
        status=OutboxStatus(found["status"]),
        attempts=int(found["attempts"]),
        next_attempt_at=float(found["next_attempt_at"]),
        last_error=found["last_error"],
        created_at=float(found["created_at"]),
        finished_at=float(found["finished_at"]) if found["finished_at"] is not None else None,
        reported=bool(found["reported"]),
        leased_by=found["leased_by"],
        lease_token=int(found["lease_token"]),
    )
