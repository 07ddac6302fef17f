"""MLflow store unreachable while the offer service runs: decisions keep coming, from the last good model."""

from __future__ import annotations

import time

from tests.chaos.conftest import CATCH_UP_S, Chaos, OffersTail, check_decisions, figures, fresh_events
from xsell.consumer import wait_for
from xsell.events import PurchaseEvent


def test_unreachable_mlflow_store_keeps_serving_the_last_good_model(
    chaos: Chaos, sample_events: list[PurchaseEvent]
) -> None:
    events = fresh_events(sample_events, 300)
    before, after = events[:100], events[100:]
    store = chaos.settings.home / "mlflow" / "mlflow.db"
    original = store.read_bytes()
    try:
        chaos.start("offers", "offers", XSELL_MODEL_REFRESH_S="1")
        with OffersTail(chaos.settings) as tail:
            chaos.produce(before)
            assert wait_for(lambda: tail.count() >= len(before), CATCH_UP_S), chaos.log_tail("offers")
            # garbage over the store in place (a rename would not do: pooled connections keep the old file)
            with store.open("r+b") as handle:
                handle.write(b"\xde\xad\xbe\xef" * 1024)
            time.sleep(3)  # several refreshes fail
            chaos.produce(after)
            assert wait_for(lambda: tail.count() >= len(events), CATCH_UP_S), chaos.log_tail("offers")
        alive = chaos.processes["offers"].poll() is None
    finally:
        chaos.stop_all()
        store.write_bytes(original)
    records = chaos.decisions(len(events))
    counts = check_decisions(records, events)
    late = [d for d in records if d.event_id in {e.event_id for e in after}]
    versions = sorted({str(d.model_version) for d in late})
    failures = chaos.log_tail("offers", 10**7).count("champion refresh failed")
    figures(
        test="mlflow_down",
        events_sent=len(events),
        offers_expected=len(events),
        offers_seen=counts["offers_seen"],
        duplicates=counts["duplicates"],
        model_versions_while_down=versions,
        refresh_failures_logged=failures,
        no_model_decisions=sum(d.no_offer_reason == "no_model" for d in records),
    )
    assert alive
    assert failures > 0, "the champion watcher never noticed the broken store"
    assert versions == ["1"], versions
    assert not any(d.no_offer_reason == "no_model" for d in records)
