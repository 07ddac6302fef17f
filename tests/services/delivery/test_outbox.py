"""The outbox on SQLite and on a real PostgreSQL server: idempotent inserts, leases on due rows,
fencing tokens, exponential back-off, sent/failed, reporting, and concurrent senders."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from services.delivery.outbox import Outbox, OutboxEntry, OutboxRow, OutboxStatus, retry_delay

T0 = 1_000_000.0


def entry(decision_id: str, message: bytes = b"Subject: hi\r\n\r\nbody\r\n") -> OutboxEntry:
    return OutboxEntry(decision_id=decision_id, customer_id="C1", offer_ids=("o1", "o2"), message=message)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'xsell.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def outbox(url: str) -> Outbox:
    return Outbox(url)


def claimed(rows: list[OutboxRow]) -> dict[str, OutboxRow]:
    return {row.decision_id: row for row in rows}


def test_insert_is_idempotent_by_decision_id_and_keeps_the_first_message(outbox: Outbox) -> None:
    assert outbox.add([entry("d1", b"first")], now=T0) == 1
    assert outbox.add([entry("d1", b"second"), entry("d2")], now=T0 + 1) == 1
    assert outbox.add([entry("d1"), entry("d2")], now=T0 + 2) == 0
    assert outbox.add([], now=T0 + 3) == 0
    assert outbox.add([entry("d3", b"once"), entry("d3", b"twice")], now=T0 + 4) == 1  # twice in one batch
    assert (stored := outbox.get("d3")) is not None and stored.message == b"once"
    row = outbox.get("d1")
    assert row is not None
    assert (row.message, row.status, row.attempts, row.offer_ids) == (b"first", OutboxStatus.PENDING, 0, ("o1", "o2"))
    assert outbox.counts() == {"pending": 3, "sent": 0, "failed": 0}


def test_a_sent_decision_queued_again_is_not_due_again(outbox: Outbox) -> None:
    outbox.add([entry("d1")], now=T0)
    [row] = outbox.claim_due(T0, "A")
    assert outbox.mark_sent(row, T0 + 1)
    assert outbox.add([entry("d1")], now=T0 + 2) == 0
    assert outbox.claim_due(T0 + 10_000, "A") == []
    stored = outbox.get("d1")
    assert stored is not None and stored.status == OutboxStatus.SENT and stored.attempts == 1
    assert stored.leased_by is None and stored.finished_at == T0 + 1


def test_claimed_rows_are_leased_until_released(outbox: Outbox) -> None:
    outbox.add([entry("d1"), entry("d2")], now=T0)
    rows = claimed(outbox.claim_due(T0, "A", lease_s=60))
    assert set(rows) == {"d1", "d2"}
    assert outbox.claim_due(T0 + 1, "B", lease_s=60) == []  # a second sender gets nothing
    assert outbox.release([rows["d2"]], T0 + 2) == 1
    assert [r.decision_id for r in outbox.claim_due(T0 + 2, "A")] == ["d2"]
    assert [r.decision_id for r in outbox.claim_due(T0 + 61, "A")] == ["d1"]  # lease over: due again


def test_each_claim_of_a_row_gives_it_a_new_larger_token(outbox: Outbox) -> None:
    outbox.add([entry("d1")], now=T0)
    tokens = []
    for n in range(3):
        [row] = outbox.claim_due(T0 + 100 * n, "A", lease_s=60)
        tokens.append(row.lease_token)
        stored = outbox.get("d1")
        assert stored is not None and (stored.lease_token, stored.leased_by) == (row.lease_token, "A")
    assert tokens == [1, 2, 3]


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
        [row] = outbox.claim_due(now, "A")
        next_at = outbox.mark_retry(row, "connection refused", now, base_s=1.0, max_s=30.0)
        assert next_at is not None
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
    [row] = outbox.claim_due(T0, "A")
    assert outbox.mark_failed(row, "550 no such user", T0 + 1)
    assert outbox.mark_retry(row, "late transient", T0 + 2) is None  # does not revive a failed row
    assert not outbox.mark_sent(row, T0 + 3)
    assert outbox.claim_due(T0 + 10_000, "A") == []
    stored = outbox.get("d1")
    assert stored is not None and (stored.status, stored.last_error) == (OutboxStatus.FAILED, "550 no such user")
    assert outbox.counts() == {"pending": 0, "sent": 0, "failed": 1}


def test_finished_rows_are_reported_once(outbox: Outbox) -> None:
    outbox.add([entry("d1"), entry("d2"), entry("d3")], now=T0)
    rows = claimed(outbox.claim_due(T0, "A"))
    outbox.mark_sent(rows["d1"], T0 + 1)
    outbox.mark_failed(rows["d2"], "550", T0 + 2)
    assert [r.decision_id for r in outbox.unreported()] == ["d1", "d2"]
    outbox.mark_reported(["d1", "d2"])
    assert outbox.unreported() == []
    assert outbox.next_due_at() == T0 + 600  # d3 is still pending (leased)


def test_state_survives_reopening_the_database(url: str) -> None:
    first = Outbox(url)
    first.add([entry("d1")], now=T0)
    first.close()
    reopened = Outbox(url)
    assert reopened.add([entry("d1")], now=T0) == 0
    assert [r.decision_id for r in reopened.claim_due(T0, "A")] == ["d1"]


def test_the_claims_of_a_silent_sender_are_due_again_without_waiting_for_the_lease(outbox: Outbox) -> None:
    outbox.add([entry("d1"), entry("d2")], now=T0)
    assert len(outbox.claim_due(T0, "killed", lease_s=600, stale_s=30)) == 2
    outbox.heartbeat("killed", T0 + 20)
    assert outbox.claim_due(T0 + 45, "restarted", stale_s=30) == []  # it beat 25 s ago: still alive
    rows = outbox.claim_due(T0 + 51, "restarted", stale_s=30)  # silent for 31 s: gone
    assert {r.decision_id for r in rows} == {"d1", "d2"}
    assert {r.leased_by for r in rows} == {"killed"}  # who held them, as read before the new claim
    stored = outbox.get("d1")
    assert stored is not None and stored.leased_by == "restarted"


def test_an_outcome_written_with_a_beat_keeps_the_senders_other_claims(outbox: Outbox) -> None:
    outbox.add([entry("d1"), entry("d2"), entry("d3")], now=T0)
    rows = claimed(outbox.claim_due(T0, "A", lease_s=600, stale_s=30))
    assert outbox.mark_sent(rows["d1"], T0 + 20, beat="A")
    assert outbox.claim_due(T0 + 45, "B", stale_s=30) == []  # A beat with its outcome 25 s ago: alive
    assert outbox.mark_failed(rows["d2"], "550", T0 + 46, beat="A")
    assert outbox.claim_due(T0 + 70, "B", stale_s=30) == []
    assert [r.decision_id for r in outbox.claim_due(T0 + 77, "B", stale_s=30)] == ["d3"]  # silent 31 s
    assert outbox.counts() == {"pending": 1, "sent": 1, "failed": 1}


def test_a_sender_whose_rows_were_taken_over_cannot_mark_them(outbox: Outbox) -> None:
    outbox.add([entry("d1"), entry("d2"), entry("d3"), entry("d4")], now=T0)
    old = claimed(outbox.claim_due(T0, "A", lease_s=600, stale_s=30))
    new = claimed(outbox.claim_due(T0 + 31, "B", stale_s=30))  # A went silent: B takes its rows over
    assert set(new) == set(old) and all(new[d].lease_token > old[d].lease_token for d in old)
    assert not outbox.mark_sent(old["d1"], T0 + 32)  # A wakes up: each of its writes is fenced off
    assert not outbox.mark_failed(old["d2"], "550", T0 + 32)
    assert outbox.mark_retry(old["d3"], "421", T0 + 32) is None
    assert outbox.release([old["d4"]], T0 + 32) == 0
    for decision_id in old:
        stored = outbox.get(decision_id)
        assert stored is not None and (stored.status, stored.leased_by, stored.attempts) == (
            OutboxStatus.PENDING,
            "B",
            0,
        )
    assert outbox.mark_sent(new["d1"], T0 + 33)  # B's claim holds
    assert outbox.mark_failed(new["d2"], "550", T0 + 33)
    assert outbox.mark_retry(new["d3"], "421", T0 + 33) == T0 + 34
    assert outbox.release([new["d4"]], T0 + 33) == 1
    assert outbox.counts() == {"pending": 2, "sent": 1, "failed": 1}


def test_a_lease_that_ran_out_and_was_claimed_again_fences_off_the_first_claim(outbox: Outbox) -> None:
    outbox.add([entry("d1")], now=T0)
    [first] = outbox.claim_due(T0, "A", lease_s=60)
    [second] = outbox.claim_due(T0 + 61, "B", lease_s=60)  # A is alive but its lease ran out
    assert not outbox.mark_sent(first, T0 + 62)
    assert outbox.mark_sent(second, T0 + 62)
    stored = outbox.get("d1")
    assert stored is not None and stored.status == OutboxStatus.SENT and stored.attempts == 1


def test_a_retiring_sender_hands_back_its_claims(outbox: Outbox) -> None:
    outbox.add([entry("d1")], now=T0)
    outbox.claim_due(T0, "A")
    outbox.retire("A", T0 + 1)
    assert [r.decision_id for r in outbox.claim_due(T0 + 1, "B")] == ["d1"]


def test_concurrent_senders_never_claim_the_same_row(url: str) -> None:
    seeded = Outbox(url)
    seeded.add([entry(f"d{n:03d}") for n in range(300)], now=T0)
    senders = {name: Outbox(url) for name in ("A", "B", "C")}
    taken: dict[str, list[str]] = {name: [] for name in senders}
    errors: list[BaseException] = []
    start = threading.Barrier(len(senders))

    def claim(name: str, outbox: Outbox) -> None:
        try:
            outbox.heartbeat(name, T0)  # connected before the start
            start.wait()
            while rows := outbox.claim_due(T0 + 1, name, limit=7):
                taken[name].extend(r.decision_id for r in rows)
        except BaseException as error:  # noqa: BLE001  (handed to the test thread)
            errors.append(error)

    threads = [threading.Thread(target=claim, args=pair) for pair in senders.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    every = [d for ids in taken.values() for d in ids]
    assert len(every) == len(set(every)) == 300
    for name, ids in taken.items():
        stored = [seeded.get(d) for d in ids]
        assert all(row is not None and (row.leased_by, row.lease_token) == (name, 1) for row in stored)
