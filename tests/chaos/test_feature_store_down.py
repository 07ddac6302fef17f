"""Feast online store unreadable while the offer service runs: a clear error, no decision without
features, and once the store is back every event is decided and none skipped."""

from __future__ import annotations

import time

from tests.chaos.conftest import CATCH_UP_S, Chaos, OffersTail, check_decisions, figures, fresh_events
from xsell.consumer import wait_for
from xsell.events import PurchaseEvent

BROKEN_S = 15.0


def test_unreadable_online_store_holds_events_back_until_it_is_restored(
    chaos: Chaos, sample_events: list[PurchaseEvent]
) -> None:
    events = fresh_events(sample_events, 200)
    before, during = events[:100], events[100:]
    online = chaos.settings.feast_dir / "online.db"
    original = online.read_bytes()
    restarted = False
    try:
        chaos.start("offers", "offers")
        with OffersTail(chaos.settings) as tail:
            chaos.produce(before)
            assert wait_for(lambda: tail.count() >= len(before), CATCH_UP_S), chaos.log_tail("offers")
            with online.open("r+b") as handle:  # garbage over the header, in place (open connections see it)
                handle.write(b"\xde\xad\xbe\xef" * 1024)
            chaos.produce(during)
            time.sleep(BROKEN_S)
            decided_while_broken = tail.count() - len(before)
            alive_while_broken = chaos.processes["offers"].poll() is None
            log = chaos.log_tail("offers", 10**7)
            online.write_bytes(original)  # restored in place
            if not alive_while_broken:  # what a supervisor would do; the promise is that it is not needed
                restarted = True
                chaos.start("offers", "offers")
            caught_up = wait_for(lambda: tail.count() >= len(events), CATCH_UP_S)
    finally:
        chaos.stop_all()
        if online.read_bytes() != original:
            online.write_bytes(original)
    records = chaos.decisions(len(events)) if caught_up else []
    counts = check_decisions(records, events) if caught_up else {"offers_seen": 0, "duplicates": 0}
    clear_error = "not a database" in log or "database disk image is malformed" in log
    figures(
        test="feature_store_down",
        events_sent=len(events),
        offers_expected=len(events),
        offers_seen=counts["offers_seen"],
        duplicates=counts["duplicates"],
        decided_while_broken=decided_while_broken,
        service_alive_while_broken=alive_while_broken,
        restarted_by_test=restarted,
        clear_error_logged=clear_error,
    )
    assert decided_while_broken == 0, "decisions were made without features"
    assert clear_error, log[-3000:]
    assert caught_up and counts["offers_seen"] == len(events)
    assert alive_while_broken, "the offer service crashed out instead of retrying the batch after a backoff"
