"""The outbox: idempotent inserts, leases on due rows, exponential back-off, sent/failed, reporting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from services.delivery.outbox import SCHEMA, Outbox, OutboxEntry, OutboxStatus, retry_delay

T0 = 1_000_000.0


def entry(decision_id: str, message: bytes = b"Subject: hi\r\n\r\nbody\r\n") -> OutboxEntry:
    return OutboxEntry(decision_id=decision_id, customer_id="C1", offer_ids=("o1", "o2"), message=message)


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "state" / "outbox.db")


def test_insert_is_idempotent_by_decision_id_and_keeps_the_first_message(outbox: Outbox) -> None:
    assert outbox.add([entry("d1", b"first")], now=T0) == 1
    assert outbox.add([entry("d1", b"second"), entry("d2")], now=T0 + 1) == 1
    assert outbox.add([entry("d1"), entry("d2")], now=T0 + 2) == 0
    row = outbox.get("d1")
    assert row is not None
    assert (row.message, row.status, row.attempts, row.offer_ids) == (b"first", OutboxStatus.PENDING, 0, ("o1", "o2"))
    assert outbox.counts() == {"pending": 2, "sent": 0, "failed": 0}


def test_a_sent_decision_queued_again_is_not_due_again(outbox: Outbox) -> None:
    outbox.add([entry("d1")], now=T0)
    [claimed] = outbox.claim_due(T0, "A")
    outbox.mark_sent(claimed.decision_id, T0 + 1)
    assert outbox.add([entry("d1")], now=T0 + 2) == 0
    assert outbox.claim_due(T0 + 10_000, "A") == []
    row = outbox.get("d1")
    assert row is not None and row.status == OutboxStatus.SENT and row.attempts == 1


def test_claimed_rows_are_leased_until_released(outbox: Outbox) -> None:
    outbox.add([entry("d1"), entry("d2")], now=T0)
    assert {r.decision_id for r in outbox.claim_due(T0, "A", lease_s=60)} == {"d1", "d2"}
    assert outbox.claim_due(T0 + 1, "B", lease_s=60) == []  # a second sender gets nothing
    outbox.release(["d2"], T0 + 2)
    assert [r.decision_id for r in outbox.claim_due(T0 + 2, "A")] == ["d2"]
    assert [r.decision_id for r in outbox.claim_due(T0 + 61, "A")] == ["d1"]  # lease over: due again


def test_claim_respects_limit_and_due_time(outbox: Outbox) -> None:
    outbox.add([entry(f"d{i}") for i in range(5)], now=T0)
    outbox.add([entry("later")], now=T0 + 100)
    assert len(outbox.claim_due(T0, "A", limit=3)) == 3
    assert {r.decision_id for r in outbox.claim_due(T0 + 1, "A")} == {"d3", "d4"}


def test_failures_back_off_exponentially_up_to_the_cap(outbox: Outbox) -> None:
    outbox.add([entry("d1")], now=T0)
    delays = []
    now = T0
    for _ in range(8):
        assert len(outbox.claim_due(now, "A")) == 1
        next_at = outbox.mark_retry("d1", "connection refused", now, base_s=1.0, max_s=30.0)
        assert outbox.claim_due(next_at - 0.01, "A") == []
        delays.append(next_at - now)
        now = next_at
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    row = outbox.get("d1")
    assert row is not None and row.attempts == 8 and row.last_error == "connection refused"
    assert row.status == OutboxStatus.PENDING


def test_retry_delay() -> None:
    assert [retry_delay(n, 0.5, 60) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 4]
    assert retry_delay(10_000, 1, 60) == 60


def test_permanent_failure_is_never_due_again(outbox: Outbox) -> None:
    outbox.add([entry("d1")], now=T0)
    outbox.claim_due(T0, "A")
    outbox.mark_failed("d1", "550 no such user", T0 + 1)
    outbox.mark_retry("d1", "late transient", T0 + 2)  # does not revive a failed row
    assert outbox.claim_due(T0 + 10_000, "A") == []
    row = outbox.get("d1")
    assert row is not None and (row.status, row.last_error) == (OutboxStatus.FAILED, "550 no such user")
    assert outbox.counts() == {"pending": 0, "sent": 0, "failed": 1}


def test_finished_rows_are_reported_once(outbox: Outbox) -> None:
    outbox.add([entry("d1"), entry("d2"), entry("d3")], now=T0)
    outbox.claim_due(T0, "A")
    outbox.mark_sent("d1", T0 + 1)
    outbox.mark_failed("d2", "550", T0 + 2)
    assert [r.decision_id for r in outbox.unreported()] == ["d1", "d2"]
    outbox.mark_reported(["d1", "d2"])
    assert outbox.unreported() == []
    assert outbox.next_due_at() is not None  # d3 is still pending (leased)


def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    Outbox(path).add([entry("d1")], now=T0)
    reopened = Outbox(path)
    assert reopened.add([entry("d1")], now=T0) == 0
    assert [r.decision_id for r in reopened.claim_due(T0, "A")] == ["d1"]


def test_the_claims_of_a_silent_sender_are_due_again_without_waiting_for_the_lease(tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.add([entry("d1"), entry("d2")], now=T0)
    assert len(outbox.claim_due(T0, "killed", lease_s=600, stale_s=30)) == 2
    outbox.heartbeat("killed", T0 + 20)
    assert outbox.claim_due(T0 + 45, "restarted", stale_s=30) == []  # it beat 25 s ago: still alive
    claimed = outbox.claim_due(T0 + 51, "restarted", stale_s=30)  # silent for 31 s: gone
    assert {r.decision_id for r in claimed} == {"d1", "d2"}
    assert {r.leased_by for r in claimed} == {"killed"}  # who held them, as read before the new claim
    assert outbox.get("d1").leased_by == "restarted"


def test_a_retiring_sender_hands_back_its_claims(tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.add([entry("d1")], now=T0)
    outbox.claim_due(T0, "A")
    outbox.retire("A", T0 + 1)
    assert [r.decision_id for r in outbox.claim_due(T0 + 1, "B")] == ["d1"]


def test_an_outbox_from_before_lease_owners_gets_the_column(tmp_path) -> None:

    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA.replace(",\n    leased_by       TEXT", ""))
    Outbox(path).add([entry("d1")], now=T0)
    assert [r.decision_id for r in Outbox(path).claim_due(T0, "A")] == ["d1"]
