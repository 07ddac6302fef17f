"""kill -9 of each consumer service at a random point, then a restart with `--until-caught-up`: the
same counts as an undisturbed run (one decision per event, one e-mail per e-mail decision, feature
values equal to a backfill fold of the same events, one facts row per decision and per offer, the
archived lines equal to the events' lines).

One exception, a limit of SMTP rather than of the outbox: a sender killed after the server took a
message and before the outbox recorded it as sent cannot know it went out, so the restarted sender
sends it again, with the same Message-ID (a receiver can drop the copy). That is at most one
e-mail per kill of `deliver`, and it must be one the killed sender had claimed; anything more fails.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import select

from features.online import OnlineFeatureReader
from features.state import FoldStateStore
from features.store import open_feature_store
from infra.smtp_capture import MailDirHandler
from services.delivery.outbox import OutboxStatus, outbox_table
from services.delivery.render import message_id_for
from services.feedback.facts import open_facts
from services.feedback.report import offer_quality
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
)
from xsell.consumer import wait_for
from xsell.database import engine_for
from xsell.events import EventType, PurchaseEvent

SERVICES = {
    "features": ["features", "pipeline"],
    "offers": ["offers"],
    "deliver": ["deliver"],
    "feedback": ["feedback"],
    "archive": ["archive"],
}


def claimed_by_killed_sender(url: str) -> set[str]:
    """Decision ids of the e-mails the killed sender had claimed and not finished, read from the
    outbox in the configured database (read only: the restarted sender takes them over once the
    killed one's heartbeat is stale, 30 s)."""
    claimed = select(outbox_table.c.decision_id).where(
        outbox_table.c.status == OutboxStatus.PENDING.value, outbox_table.c.leased_by.is_not(None)
    )
    engine = engine_for(url)
    try:
        with engine.connect() as db:
            return set(db.execute(claimed).scalars())
    finally:
        engine.dispose()


def test_kill_9_of_each_service_then_restart_gives_the_undisturbed_counts(
    chaos: Chaos, sample_events: list[PurchaseEvent], tmp_path: Path
) -> None:
    seed = int(os.environ.get("XSELL_CHAOS_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    events = fresh_events(sample_events, max(CHAOS_EVENTS // 2, 200))
    fold_url = chaos.settings.fold_state_db_url
    expected_fold = FoldStateStore(fold_url).load()
    expected_fold.apply(events, snapshot_every_event=False)  # what a backfill of the same events folds to
    mail = tmp_path / "mail"
    smtp = Controller(MailDirHandler(mail), hostname=chaos.settings.smtp_host, port=chaos.settings.smtp_port)
    smtp.start()
    kills: dict[str, dict[str, object]] = {}
    try:
        for name, args in SERVICES.items():
            chaos.start(name, *args)
        with OffersTail(chaos.settings) as tail:
            producer = threading.Thread(target=chaos.produce, args=(events,), kwargs={"chunk": 50}, daemon=True)
            producer.start()
            assert wait_for(lambda: tail.count() > 0, CATCH_UP_S), chaos.log_tail("offers")
            # each service at a random point of the stream (a decision count within 5-90% of the events),
            # the offer service last: decisions stop counting while it is down
            points = sorted(rng.sample(range(len(events) // 20, len(events) * 9 // 10), len(SERVICES)))
            order = [*rng.sample([n for n in SERVICES if n != "offers"], len(SERVICES) - 1), "offers"]
            for name, point in zip(order, points, strict=True):
                assert wait_for(lambda point=point: tail.count() >= point, CATCH_UP_S), chaos.log_tail("offers")
                chaos.kill9(name)
                kills[name] = {"after_decisions": tail.count(), "code": chaos.processes[name].returncode}
            producer.join(CATCH_UP_S)
            assert not producer.is_alive(), "producer did not finish"
        leased_by_killed_sender: set[str] = set()
        for name in ("features", "archive", "offers", "deliver", "feedback"):  # upstream first
            if name == "deliver":
                leased_by_killed_sender = claimed_by_killed_sender(chaos.settings.db_url)
            chaos.run(name, *SERVICES[name], "--until-caught-up")
        records = chaos.decisions(len(events))
        counts = check_decisions(records, events)
        distinct = list({d.decision_id: d for d in records}.values())
        emails = email_decisions(distinct)
        wait_for(lambda: len(list(mail.glob("*.eml"))) >= len(emails), 30)
        time.sleep(2)
        ids = [str(message_from_bytes(p.read_bytes(), policy=policy.default)["Message-ID"]) for p in mail.glob("*.eml")]
    finally:
        chaos.stop_all()
        smtp.stop()

    twice = {i for i, n in Counter(ids).items() if n > 1}
    in_flight_twice = {i for i in twice if i.strip("<>").split("@")[0] in leased_by_killed_sender}
    touched = sorted({e.customer_id for e in events if e.customer_id and e.event_type is EventType.PURCHASE})
    after = FoldStateStore(fold_url).load()
    fold_mismatches = [c for c in touched if after.customers[c].features() != expected_fold.customers[c].features()]
    sample = sorted(touched, key=lambda c: -expected_fold.customers[c].order_count)[:5]
    online = {
        row["customer_id"]: row["order_count"]
        for row in OnlineFeatureReader(open_feature_store(chaos.settings)).customers(sample)
    }
    expected_online = {c: expected_fold.customers[c].order_count for c in sample}
    engine = open_facts(str(chaos.settings.database_url))
    quality = offer_quality(engine)
    archived, archive_expected = archived_lines(chaos.settings), expected_archive(events)
    engine.dispose()
    offers_expected = sum(len(d.offers) for d in distinct if d.customer_id)
    result = figures(
        test="kill_9",
        seed=seed,
        kills=kills,
        events_sent=len(events),
        offers_expected=len(events),
        offers_seen=counts["offers_seen"],
        duplicates=counts["duplicates"],
        different_re_emissions=counts["different_re_emissions"],
        emails_expected=len(emails),
        emails_seen=len(ids),
        email_duplicates=len(ids) - len(set(ids)),
        emails_leased_by_killed_sender=len(leased_by_killed_sender),
        email_duplicates_in_flight_at_kill=len(in_flight_twice),
        archive_lines=len(archived),
        archive_lines_expected=len(archive_expected),
        facts_decisions=quality["decisions"],
        facts_offers=quality["offers_sent"],
        facts_offers_expected=offers_expected,
        customers_checked=len(touched),
        fold_mismatches=len(fold_mismatches),
        online_order_count=online,
        expected_order_count=expected_online,
    )
    assert all(k["code"] == -9 for k in kills.values()), kills
    assert result["offers_seen"] == len(events) and result["different_re_emissions"] == 0
    assert set(ids) == {message_id_for(d, chaos.settings.mail_from) for d in emails}
    assert twice == in_flight_twice and len(twice) <= 1, (
        f"sent twice: {sorted(twice)}; of them claimed by the killed sender: {sorted(in_flight_twice)}"
    )
    assert len(ids) == len(emails) + len(twice)
    assert quality["decisions"] == len(events) and quality["offers_sent"] == offers_expected
    assert not fold_mismatches, fold_mismatches[:5]
    assert online == expected_online
    assert archived == archive_expected  # every line of every event once, nothing else
