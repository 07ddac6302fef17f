"""A broker restart mid-stream: producer and services ride it out; every purchase has exactly one
decision, every e-mail decision one .eml, every in-app offer one inbox row."""

from __future__ import annotations

import os
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

import sqlalchemy as sa
from aiosmtpd.controller import Controller

from infra.smtp_capture import MailDirHandler
from services.delivery.render import message_id_for
from tests.chaos.conftest import (
    CATCH_UP_S,
    CHAOS_EVENTS,
    Chaos,
    OffersTail,
    archived_lines,
    check_decisions,
    email_decisions,
    expected_archive,
    figures,
    fresh_events,
    in_app_offer_ids,
)
from xsell.consumer import wait_for
from xsell.events import PurchaseEvent


def message_ids(folder: Path) -> list[str]:
    """Message-IDs of the stored .eml files (one per file)."""
    return [
        str(message_from_bytes(p.read_bytes(), policy=policy.default)["Message-ID"])
        for p in sorted(folder.glob("*.eml"))
    ]


def inbox_offer_ids(chaos: Chaos) -> list[str]:
    """Offer ids stored by the inbox (one per row)."""
    engine = sa.create_engine(str(chaos.settings.database_url))
    try:
        with engine.connect() as db:
            if not sa.inspect(db).has_table("inbox_offers"):
                return []
            return [row[0] for row in db.execute(sa.text("SELECT offer_id FROM inbox_offers"))]
    finally:
        engine.dispose()


PRODUCE_RATE = float(os.environ.get("XSELL_CHAOS_PRODUCE_RATE", "200"))  # events/s: the restart hits the producer too


def test_broker_restart_mid_stream_loses_and_duplicates_nothing(
    chaos: Chaos, sample_events: list[PurchaseEvent], tmp_path: Path
) -> None:
    events = fresh_events(sample_events, CHAOS_EVENTS)
    started = time.monotonic()

    def paced(produced_so_far: int) -> None:
        """Record progress; hold the producer to PRODUCE_RATE, counted from the offer service's first
        decision (its start-up time varies with the machine's load), so it is still sending when the
        broker goes."""
        now = time.monotonic()
        longest_chunk_s[0] = max(longest_chunk_s[0], now - chunk_done_at[0])  # a chunk across the outage is long
        produced[0] = min(produced_so_far, len(events))
        if not deciding.is_set():
            deciding.wait(CATCH_UP_S)
            pace_from[0] = time.monotonic() - produced[0] / PRODUCE_RATE
        time.sleep(max(0.0, pace_from[0] + produced[0] / PRODUCE_RATE - time.monotonic()))
        chunk_done_at[0] = time.monotonic()

    mail = tmp_path / "mail"
    smtp = Controller(MailDirHandler(mail), hostname=chaos.settings.smtp_host, port=chaos.settings.smtp_port)
    smtp.start()
    produced = [0]
    chunk_done_at, longest_chunk_s = [started], [0.0]
    deciding, pace_from = threading.Event(), [started]
    retries: list[int] = []
    try:
        for name, args in (
            ("offers", ["offers"]),
            ("deliver", ["deliver"]),
            ("inbox", ["inbox"]),
            ("archive", ["archive"]),
        ):
            chaos.start(name, *args)
        with OffersTail(chaos.settings) as tail:
            producer = threading.Thread(
                target=lambda: retries.append(chaos.produce(events, on_chunk=paced)), daemon=True
            )
            producer.start()
            assert wait_for(lambda: tail.count() >= 1, CATCH_UP_S), f"no decision:\n{chaos.log_tail('offers')}"
            deciding.set()
            # the restart happens once the services are demonstrably mid-stream
            assert wait_for(lambda: tail.count() >= len(events) // 4, CATCH_UP_S), (
                f"no progress before the restart:\n{chaos.log_tail('offers')}"
            )
            seen_at_restart, produced_at_restart = tail.count(), produced[0]
            restart_began = time.monotonic()
            chaos.broker.restart(down_s=3.0)
            restart_s = time.monotonic() - restart_began  # stop, 3 s down, start until it answers
            producer.join(CATCH_UP_S)
            assert not producer.is_alive(), "producer did not finish"
            assert wait_for(lambda: tail.count() >= len(events), CATCH_UP_S), (
                f"{tail.count()} of {len(events)} decisions:\n{chaos.log_tail('offers')}"
            )
        records = chaos.decisions(len(events))
        counts = check_decisions(records, events)
        distinct = {d.decision_id: d for d in records}.values()
        emails = email_decisions(distinct)
        in_app = in_app_offer_ids(distinct)
        wait_for(
            lambda: len(list(mail.glob("*.eml"))) >= len(emails) and len(inbox_offer_ids(chaos)) >= len(in_app),
            CATCH_UP_S,
        )
        archive_expected = expected_archive(events)
        wait_for(lambda: len(archived_lines(chaos.settings)) >= len(archive_expected), CATCH_UP_S)
        time.sleep(3)  # room for duplicates to show up
        alive = {name: p.poll() is None for name, p in chaos.processes.items()}
        ids = message_ids(mail)
        rows = inbox_offer_ids(chaos)
        archived = archived_lines(chaos.settings)
    finally:
        chaos.stop_all()
        smtp.stop()
    result = figures(
        test="broker_restart",
        events_sent=len(events),
        offers_expected=len(events),
        offers_seen=counts["offers_seen"],
        duplicates=counts["duplicates"],
        different_re_emissions=counts["different_re_emissions"],
        producer_chunk_retries=retries,
        longest_producer_chunk_s=round(longest_chunk_s[0], 1),
        restart_after_decisions=seen_at_restart,
        archive_lines=len(archived),
        archive_lines_expected=len(archive_expected),
        restart_after_produced=produced_at_restart,
        broker_stop_to_ready_s=round(restart_s, 1),
        produce_rate=PRODUCE_RATE,
        seconds=round(time.monotonic() - started),
        emails_expected=len(emails),
        emails_seen=len(ids),
        email_duplicates=len(ids) - len(set(ids)),
        inbox_expected=len(in_app),
        inbox_rows=len(rows),
        inbox_duplicates=len(rows) - len(set(rows)),
        services_alive=alive,
    )
    assert 0 < seen_at_restart < len(events), "the restart was not mid-stream"
    assert produced_at_restart < len(events), "the producer had finished before the restart"
    assert all(alive.values()), f"a service died during the restart: {alive}"
    assert result["offers_seen"] == len(events) and result["different_re_emissions"] == 0
    assert sorted(ids) == sorted(message_id_for(d, chaos.settings.mail_from) for d in emails)
    assert sorted(rows) == sorted(in_app)
    assert archived == archive_expected  # every line of every event once, nothing else
