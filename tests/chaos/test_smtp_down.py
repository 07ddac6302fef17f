"""SMTP down, then up: e-mails wait in the outbox with retries and are each delivered exactly once."""

from __future__ import annotations

import time
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller

from infra.smtp_capture import MailDirHandler
from services.delivery.render import message_id_for
from tests.chaos.conftest import (
    CATCH_UP_S,
    SMTP_DOWN_S,
    Chaos,
    OffersTail,
    check_decisions,
    email_decisions,
    figures,
    fresh_events,
)
from xsell.consumer import wait_for
from xsell.events import PurchaseEvent


def test_smtp_down_then_up_delivers_every_email_exactly_once(
    chaos: Chaos, sample_events: list[PurchaseEvent], tmp_path: Path
) -> None:
    events = fresh_events(sample_events, 300)
    mail = tmp_path / "mail"
    smtp: Controller | None = None
    try:
        chaos.start("offers", "offers")
        down_since = time.monotonic()
        chaos.start("deliver", "deliver")  # nothing listens on its SMTP port yet
        with OffersTail(chaos.settings) as tail:
            chaos.produce(events)
            assert wait_for(lambda: tail.count() >= len(events), CATCH_UP_S), chaos.log_tail("offers")
        records = chaos.decisions(len(events))
        counts = check_decisions(records, events)
        emails = email_decisions({d.decision_id: d for d in records}.values())
        time.sleep(max(0.0, SMTP_DOWN_S - (time.monotonic() - down_since)))
        retried = chaos.log_tail("deliver", 10**7).count("will retry")
        smtp = Controller(MailDirHandler(mail), hostname=chaos.settings.smtp_host, port=chaos.settings.smtp_port)
        smtp.start()
        up_at = time.monotonic()
        down_for_s = up_at - down_since
        wait_for(lambda: len(list(mail.glob("*.eml"))) >= len(emails), CATCH_UP_S)
        caught_up_s = time.monotonic() - up_at
        time.sleep(3)  # room for a second copy to show up
        deliver_alive = chaos.processes["deliver"].poll() is None
    finally:
        chaos.stop_all()
        if smtp is not None:
            smtp.stop()
    ids = [str(message_from_bytes(p.read_bytes(), policy=policy.default)["Message-ID"]) for p in mail.glob("*.eml")]
    figures(
        test="smtp_down",
        smtp_down_s=SMTP_DOWN_S,
        smtp_down_measured_s=round(down_for_s, 1),
        events_sent=len(events),
        offers_expected=len(events),
        offers_seen=counts["offers_seen"],
        duplicates=counts["duplicates"],
        emails_expected=len(emails),
        emails_seen=len(ids),
        email_duplicates=len(ids) - len(set(ids)),
        retry_log_lines=retried,
        seconds_to_deliver_after_up=round(caught_up_s, 1),
    )
    assert emails, "no e-mail decision: nothing was tested"
    assert down_for_s >= SMTP_DOWN_S, "SMTP was not down as long as asked"
    assert retried > 0, "delivery never tried while SMTP was down"
    assert deliver_alive, chaos.log_tail("deliver")
    assert sorted(ids) == sorted(message_id_for(d, chaos.settings.mail_from) for d in emails)
